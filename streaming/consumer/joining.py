"""A stage's consumer in its group: joining it, knowing it still owns its partitions, and joining
again if no partition ever comes.

The group hands partitions over through a rebalance listener; the stage sets them up after the
poll that assigned them (``partitions.Partitions``) and saves its state before giving any up.
A member the group has already expelled (it stalled past the session timeout: a paused VM, a
stopped process) has its partitions *lost*, not revoked: another instance may be processing them
from the shared state, so the stale member drops them without saving or writing anything.
Between being expelled and hearing of it, a member could still write: ``holds_lease`` closes that
gap by trusting ownership only while a heartbeat has been answered within a lease shorter than
the session timeout, the time after which the group coordinator would expel it.
Offsets are never committed automatically: the stage commits them after its writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.consumer.stages import Stage
from streaming.wire.record_blocks import read_blocks

log = logging.getLogger(__name__)
HEARTBEATS_PER_SESSION = 5
# Ownership is trusted this share of the session timeout after the last answered heartbeat: the
# coordinator expels a member no sooner than a whole session after it last heard from it, and
# three heartbeats may be missed before a busy stage pauses its writes.
LEASE_OF_SESSION = 0.7


def fetch_options(settings: Settings) -> dict:
    """How much a poll fetches and returns: the stage's consumer and the benchmark's raw one alike."""
    return {"max_poll_records": settings.stream_max_poll_records, "max_partition_fetch_bytes": 4 * 1024 * 1024}


def join_group(settings: Settings, topic: str, group: str, client_id: str,
               listener: ConsumerRebalanceListener) -> KafkaConsumer:  # fmt: skip
    """A stage's consumer in its group, its polls returning each partition's records as columns
    (``record_blocks``); offsets are committed by the stage, after its writes."""
    session_ms = int(settings.stream_session_timeout_s * 1000)
    consumer = KafkaConsumer(**kafka_options(settings), group_id=group, client_id=client_id,
                             enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=session_ms,
                             heartbeat_interval_ms=session_ms // HEARTBEATS_PER_SESSION,
                             **fetch_options(settings))  # fmt: skip
    consumer.subscribe([topic], listener=listener)
    # The topic's partitions known to the coordinator before the first JoinGroup. Otherwise,
    # when that metadata arrives after the join (under load it took 0.5 s), kafka-python 3.0
    # rejoins, and a poll that times out inside that second round loses it (need_rejoin turns
    # False before its SyncGroup answer is applied): the stage then owned nothing until
    # rejoin_if_never_assigned, 30 s later, spinning a core meanwhile; 4 of 9 benchmark runs.
    # ``topics()`` always fetches metadata, and every metadata update refreshes the snapshot.
    consumer.topics()
    return read_blocks(consumer)


class RebalanceListener(ConsumerRebalanceListener):
    """Hands the group's assignments, revocations and losses to the stage."""

    def __init__(self, revoked: Callable[[list[TopicPartition]], None],
                 assigned: Callable[[list[TopicPartition]], None],
                 lost: Callable[[list[TopicPartition]], None]):  # fmt: skip
        self._revoked, self._assigned, self._lost = revoked, assigned, lost

    def on_partitions_revoked(self, revoked):
        self._revoked(list(revoked))

    def on_partitions_assigned(self, assigned):
        self._assigned(list(assigned))

    def on_partitions_lost(self, lost):
        self._lost(list(lost))


class Membership:
    """The stage's current consumer. Others reach it through ``consumer`` at each use, since a
    rejoin replaces it."""

    def __init__(self, settings: Settings, stage: Stage, listener: ConsumerRebalanceListener):
        self.settings, self.stage, self.listener = settings, stage, listener
        self.consumer: KafkaConsumer | None = None
        self.joined_at: float | None = None
        self.rejoins = 0

    def join(self) -> None:
        self.consumer = join_group(self.settings, self.stage.topic, self.stage.group(self.settings),
                                   f"features-{self.stage.name}", self.listener)  # fmt: skip
        self.joined_at = time.monotonic()

    def holds_lease(self) -> bool:
        """True while this member certainly still owns its partitions: it has a generation and a
        heartbeat was answered within the lease (``LEASE_OF_SESSION`` of the session timeout).

        Reads kafka-python 3.0's heartbeat clock (``_coordinator.heartbeat``; kafka-python is
        held below 3.1, and a unit test fails if the attributes move)."""
        meta = self.consumer.group_metadata()
        if meta.generation_id < 0 or not meta.member_id:
            return False
        heartbeat = self.consumer._coordinator.heartbeat
        answered = max(heartbeat.last_receive, heartbeat.last_reset)
        return time.monotonic() - answered < self.settings.stream_session_timeout_s * LEASE_OF_SESSION

    def rejoin_if_never_assigned(self, owns_any: bool, after_s: float = 30.0, attempts: int = 3) -> None:
        """A safety net for a member that never receives its assignment and never rejoins (the
        kafka-python 3.0 race ``join_group`` avoids at startup; a later metadata rejoin could
        still meet it). A fresh consumer joins again; it owns nothing yet, so nothing is lost."""
        if owns_any or self.rejoins >= attempts:
            return
        if time.monotonic() - self.joined_at < after_s:
            return
        log.warning("%s: no partitions after %.0f s; joining the group again", self.stage.name, after_s)
        self.consumer.close(autocommit=False)
        self.join()
        self.rejoins += 1

    def close(self) -> None:
        self.consumer.close(autocommit=False)
