"""Create the project's topics from ``settings.topic_specs()``, idempotently.

Topics are created explicitly (the local broker has auto-creation off) so partition counts and
retention are what the design says, not broker defaults. Running it again only repairs drift:
missing topics are created, too few partitions are raised (never lowered: Kafka cannot), and a
retention that differs from the settings is set back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from rental.servers.lifecycle import ServiceError

TopicSpecs = dict[str, tuple[int, int]]  # name -> (partitions, retention.ms)


@contextmanager
def admin_client(bootstrap_servers: str, timeout_s: float = 10.0) -> Iterator[KafkaAdminClient]:
    """An admin client that fails fast with a clear message when no broker answers."""
    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="rental-services",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=max(timeout_ms, 5000),
        )
    except KafkaError as exc:
        raise ServiceError(f"no Kafka broker answers at {bootstrap_servers}: {exc!r}") from None
    try:
        yield admin
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    existing = set(admin.list_topics())
    wanted = [name for name in names if name in existing]
    if not wanted:
        return {}
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(wanted) if t.get("error_code", 0) == 0}


def _retentions(admin: KafkaAdminClient, names: list[str]) -> dict[str, int | None]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, ["retention.ms"]) for name in names]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    found: dict[str, int | None] = {}
    for name in names:
        value = (described.get(name, {}).get("retention.ms") or {}).get("value")
        found[name] = int(value) if value not in (None, "") else None
    return found


def ensure_topics(admin: KafkaAdminClient, specs: TopicSpecs, timeout_s: float = 30.0) -> list[str]:
    """Make every topic in ``specs`` exist as specified; return one line per action taken."""
    actions: list[str] = []
    names = list(specs)
    counts = _partition_counts(admin, names)

    missing = {name: spec for name, spec in specs.items() if name not in counts}
    if missing:
        request = {
            name: {"num_partitions": partitions, "replication_factor": -1, "configs": {"retention.ms": str(retention)}}
            for name, (partitions, retention) in missing.items()
        }
        result = admin.create_topics(request, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        for topic in result["topics"]:
            name, code = topic["name"], topic["error_code"]
            if code == 0:
                actions.append(f"created {name} ({missing[name][0]} partitions)")
            elif code == TopicAlreadyExistsError.errno:
                counts[name] = _partition_counts(admin, [name]).get(name, 0)  # created concurrently
            else:
                raise ServiceError(f"could not create topic {name}: error {code} {topic.get('error_message') or ''}")
        admin.wait_for_topics(list(missing), timeout_ms=int(timeout_s * 1000))

    grow = {name: specs[name][0] for name, count in counts.items() if count < specs[name][0]}
    if grow:
        admin.create_partitions(grow, timeout_ms=int(timeout_s * 1000))
        admin.wait_for_topics(list(grow), timeout_ms=int(timeout_s * 1000))
        actions += [f"added partitions to {name}: {counts[name]} -> {total}" for name, total in grow.items()]

    present = [name for name in counts if name in specs]
    drifted = {name: specs[name][1] for name, ms in _retentions(admin, present).items() if ms != specs[name][1]}
    if drifted:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": str(ms)}) for name, ms in drifted.items()],
            incremental=True,
        )
        actions += [f"set retention.ms of {name} to {ms}" for name, ms in drifted.items()]

    for name in names:
        if name in counts and name not in grow and name not in drifted:
            extra = f", more than the {specs[name][0]} configured" if counts[name] > specs[name][0] else ""
            actions.append(f"ok {name} ({counts[name]} partitions{extra})")
    return actions
