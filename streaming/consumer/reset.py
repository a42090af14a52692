"""Start stages over: forget their saved state and their groups' committed offsets together.

A stage's committed offsets and its saved window state belong together: a stage with offsets but
no state refuses to start (``partitions.StartRefused``), since windows built from the offset on
would miss the events before it. So the two are only ever dropped together: by a new backfill
(the stages then start from its state) and by ``rental stream reset``.
"""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.errors import GroupIdNotFoundError, KafkaError, NonEmptyGroupError

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.consumer import checkpoint
from streaming.consumer.stages import stages as all_stages


class ResetRefused(RuntimeError):
    """A group still has members: its running stages would commit again."""


def reset_stages(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Delete the named stages' consumer groups (their committed offsets), then their saved
    state; return the groups reset. Refuses while any of them has running members."""
    defined = all_stages(settings)
    unknown = sorted(set(names or ()) - set(defined))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; known: {list(defined)}")
    groups = [defined[name].group(settings) for name in (names or list(defined))]
    admin = KafkaAdminClient(**kafka_options(settings), client_id="features-reset")
    try:
        results = admin.delete_groups(groups)  # group -> "OK" or the error's class name
    finally:
        admin.close()
    busy = [group for group, result in results.items() if result == NonEmptyGroupError.__name__]
    if busy:
        raise ResetRefused(f"group(s) {busy} still have running members: stop `rental stream features` first")
    failed = {group: result for group, result in results.items() if result not in ("OK", GroupIdNotFoundError.__name__)}
    if failed:
        raise KafkaError(f"could not delete consumer group(s): {failed}")
    for group in groups:
        checkpoint.forget(settings, group)
    return groups
