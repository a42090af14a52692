"""Create the project's topics from ``settings.topic_specs()`` and ``compacted_topics()``, idempotently.

Topics are created explicitly (the local broker has auto-creation off) so partition counts and
retention are what the design says, not broker defaults. Running it again only repairs drift:
missing topics are created, too few partitions are raised (never lowered: Kafka cannot), and a
retention or cleanup policy that differs from the settings is set back. A compacted topic
(``cleanup.policy=compact``, the live catalogue) keeps each key's latest value for ever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from rental.connections import kafka_failure_note, kafka_failures, kafka_options
from rental.servers.lifecycle import ServiceError
from rental.settings import Settings

TopicSpecs = dict[str, tuple[int, int]]  # name -> (partitions, retention.ms)


@contextmanager
def admin_client(target: Settings | str, timeout_s: float = 10.0) -> Iterator[KafkaAdminClient]:
    """An admin client that fails fast with a clear message when no broker answers. ``target``:
    the settings (their brokers and security) or, for a plaintext broker, a bootstrap list."""
    timeout_ms = int(timeout_s * 1000)
    options = kafka_options(target) if isinstance(target, Settings) else {"bootstrap_servers": target}
    with kafka_failures() as failures:
        try:
            admin = KafkaAdminClient(
                **options,
                client_id="rental-services",
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=max(timeout_ms, 5000),
            )
        except KafkaError as exc:
            note = kafka_failure_note(target, failures) if isinstance(target, Settings) else ""
            raise ServiceError(f"no Kafka broker answers at {options['bootstrap_servers']}: {exc!r}{note}") from None
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


def _configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str | None]]:
    """Each topic's retention.ms and cleanup.policy as the broker has them."""
    if not names:
        return {}
    keys = ["retention.ms", "cleanup.policy"]
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, keys) for name in names]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {name: {key: (described.get(name, {}).get(key) or {}).get("value") for key in keys} for name in names}


def _wanted(spec: tuple[int, int], compacted: bool) -> dict[str, str]:
    return {"retention.ms": str(spec[1]), "cleanup.policy": "compact" if compacted else "delete"}


def project_topics(settings: Settings) -> tuple[TopicSpecs, set[str]]:
    """Every topic the project runs on and which of them are compacted (kept for ever)."""
    compacted = settings.compacted_topics()
    specs = dict(settings.topic_specs())
    if settings.topic_items in compacted:
        specs[settings.topic_items] = (settings.items_partitions, -1)
    return specs, compacted


def ensure_topics(admin: KafkaAdminClient, specs: TopicSpecs, timeout_s: float = 30.0,
                  compacted: set[str] | frozenset[str] = frozenset()) -> list[str]:  # fmt: skip
    """Make every topic in ``specs`` exist as specified (those in ``compacted`` with
    cleanup.policy=compact); return one line per action taken."""
    actions: list[str] = []
    names = list(specs)
    counts = _partition_counts(admin, names)

    missing = {name: spec for name, spec in specs.items() if name not in counts}
    if missing:
        request = {
            name: {"num_partitions": spec[0], "replication_factor": -1, "configs": _wanted(spec, name in compacted)}
            for name, spec in missing.items()
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
    drifted: dict[str, dict[str, str]] = {}
    for name, found in _configs(admin, present).items():
        # A topic without the policy described keeps Kafka's default, delete.
        found = {"cleanup.policy": "delete"} | {key: value for key, value in found.items() if value not in (None, "")}
        wrong = {k: v for k, v in _wanted(specs[name], name in compacted).items() if found.get(k) != v}
        if wrong:
            drifted[name] = wrong
    if drifted:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, wrong) for name, wrong in drifted.items()],
            incremental=True,
        )
        actions += [
            f"set {key} of {name} to {value}" for name, wrong in drifted.items() for key, value in wrong.items()
        ]

    for name in names:
        if name in counts and name not in grow and name not in drifted:
            extra = f", more than the {specs[name][0]} configured" if counts[name] > specs[name][0] else ""
            actions.append(f"ok {name} ({counts[name]} partitions{extra})")
    return actions
