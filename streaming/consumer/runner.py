"""One stage of the live feature consumer: Kafka records in, features in Redis and Parquet out.

Per poll: decode and check each partition's records (``decoding``; bad ones to the DLQ), apply
the events to that partition's window state (``partitions``), queue what the stage forwards and
send it after the poll (``forwarding``), write the changed entities to Redis and keep the rows
for the offline store (``writing``). When a checkpoint is due, ``committing`` makes all of it
durable and only then commits the offsets. The consumer itself, its group and its rebalances
are ``joining``'s.
"""

from __future__ import annotations

import gc
import logging
import time
from datetime import UTC, datetime

import numpy as np
from kafka import KafkaProducer, TopicPartition

from rental.settings import Settings
from streaming.consumer.committing import Committer
from streaming.consumer.counters import Counters
from streaming.consumer.dead_letters import UNKNOWN_ITEM_REASON, DeadLetters
from streaming.consumer.decoding import decode_records
from streaming.consumer.event_time import rejected
from streaming.consumer.forwarding import Outbox
from streaming.consumer.joining import Membership, RebalanceListener
from streaming.consumer.partitions import Partitions, PartitionState
from streaming.consumer.stages import Stage
from streaming.consumer.writing import RowWriter
from streaming.events import to_us
from streaming.feature_store.online_write import OnlineWriter
from streaming.features.event_batch import EventBatch
from streaming.features.pipeline import APPLIED, DUPLICATE, UNKNOWN_ITEM, Catalogue
from streaming.wire.record_blocks import BadBatch, RecordColumns

GC_FULL_EVERY_S = 600.0
SAVING_POLL_MS = 10  # poll timeout while a checkpoint is being written
log = logging.getLogger(__name__)


class StageRunner:
    def __init__(self, stage: Stage, settings: Settings, catalogue: Catalogue, writer: OnlineWriter,
                 producer: KafkaProducer, dead_letters: DeadLetters, poll_timeout_ms: int | None = None):  # fmt: skip
        self.stage = stage
        self.settings = settings
        self.catalogue = catalogue
        self.writer = writer
        self.producer = producer
        self.dead_letters = dead_letters
        self.counters = Counters()
        self.partitions = Partitions(settings, stage, catalogue)
        self.member = Membership(
            settings, stage, RebalanceListener(self._revoked, self.partitions.assigned, self._lost)
        )
        self.outbox = Outbox(stage.forwards, catalogue, producer)
        self.rows = RowWriter(stage.view, writer, self.counters)
        self.committer = Committer(stage, settings, self.member, self.rows, self.outbox, dead_letters, producer,
                                   writer, self.counters)  # fmt: skip
        self._last_full_gc = time.monotonic()
        self._poll_timeout_ms = poll_timeout_ms or settings.stream_poll_timeout_ms
        self.member.join()
        self.polled_at: float | None = None

    @property
    def parts(self) -> dict[TopicPartition, PartitionState]:
        return self.partitions.owned

    @property
    def advanced_at(self) -> float | None:
        """When a commit last moved an offset forward: the moment its events count as written."""
        return self.committer.advanced_at

    def rejoin_if_never_assigned(self, after_s: float = 30.0, attempts: int = 3) -> None:
        self.member.rejoin_if_never_assigned(bool(self.parts or self.partitions.pending), after_s, attempts)

    # -- the loop -------------------------------------------------------------------------------
    def poll_once(self) -> int:
        """Process what one poll returns; return how many records it held."""
        if not self.parts and not self.partitions.pending:
            # Joining the group, or nothing to own. One whole poll, never a short poll and a
            # sleep: kafka-python 3.0 drops a JoinGroup/SyncGroup round that completes between
            # two polls and starts another, so with 10 ms polls a stage under load rejoined up to
            # ~40 times and took 2-3 s to get its partitions.
            self.member.consumer.poll(timeout_ms=self._poll_timeout_ms)
            if not self.partitions.pending:
                return 0
        self.polled_at = time.time()  # busy time starts when the poll that returns the first records is made
        # While a checkpoint is being written, short polls: its commit follows within a few ms
        # of the child's exit instead of a whole poll timeout later.
        timeout_ms = min(self._poll_timeout_ms, SAVING_POLL_MS) if self.committer.saving else self._poll_timeout_ms
        batches = self.member.consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.stream_max_poll_records)
        if (
            self.partitions.pending
        ):  # every new partition is sought to its start; records fetched before that are dropped
            for tp in self._set_up_assigned():
                batches.pop(tp, None)
        n = 0
        for tp, blocks in batches.items():
            part = self.parts.get(tp)
            if part is None:  # revoked while the poll was in flight
                continue
            good = [block for block in blocks if not isinstance(block, BadBatch)]
            past_bad = self._skip_bad_batches(blocks) if len(good) < len(blocks) else 0
            if past_bad:
                part.next_offset = past_bad
            if not good:
                continue
            records = RecordColumns.concat(good)
            self._apply(part, records)
            part.next_offset = max(int(records.offsets[-1]) + 1, past_bad)
            n += len(records)
        self.outbox.send()  # forwarded twice by a stale owner, an event still counts once downstream
        caught_up = self.partitions.advance_idle(self.member.consumer, self._now_us())
        self.committer.poll()
        self._tidy_memory()
        if not self.member.holds_lease():
            # Perhaps expelled and not yet told: write nothing (the rows wait in the windows)
            # until a heartbeat is answered or the partitions are lost.
            self.counters.lease_waits += 1
            return n
        self.rows.write(self.parts.values())
        if self.committer.due(n, caught_up):
            self.checkpoint(background=True)
        return n

    def _apply(self, part: PartitionState, records: RecordColumns) -> None:
        """Decode a partition's records (bad ones to the DLQ), apply the events in one call,
        and queue what the stage forwards."""
        batch, owner = decode_records(
            records, self.stage.reads_batches, self.dead_letters
        )  # owner: each event's record
        if not self.stage.reads_batches and len(batch):  # the head of the pipeline bounds event time
            batch, owner = self._within_time_bounds(part, records, batch, owner)
        if not len(batch):
            return
        status = part.pipeline.process_batch(batch)
        for i in np.flatnonzero(status == UNKNOWN_ITEM).tolist():
            self.dead_letters.send(records.record(owner[i]), f"{UNKNOWN_ITEM_REASON} {batch.item_id[i]!r}")
        applied = status == APPLIED
        self.counters.duplicates += int(np.count_nonzero(status == DUPLICATE))
        self.counters.events += int(np.count_nonzero(applied))
        if self.stage.forwards and applied.any():
            self.outbox.add(batch if applied.all() else batch.take(applied))

    def _within_time_bounds(self, part: PartitionState, records: RecordColumns, batch: EventBatch,
                            owner: list[int]) -> tuple[EventBatch, list[int]]:  # fmt: skip
        """The events dated inside ``event_time``'s bounds; the others to the DLQ with the reason."""
        out = rejected(batch.time_us, part.pipeline.clock_us, self._now_us(), self.settings.stream_max_future_skew_s)
        if not out:
            return batch, owner
        keep = np.ones(len(batch), bool)
        for i, reason in out:
            self.dead_letters.send(records.record(owner[i]), reason)
            keep[i] = False
        return batch.take(keep), [o for o, k in zip(owner, keep.tolist(), strict=True) if k]

    def _skip_bad_batches(self, blocks: list) -> int:
        """One dead letter per batch that cannot be trusted (``BadBatch`` states the rule); the
        offset past the last of them, where the partition resumes."""
        past = 0
        for block in blocks:
            if isinstance(block, BadBatch):
                self.dead_letters.send(block.record(), block.letter_reason)
                past = max(past, block.next_offset)
        return past

    def _now_us(self) -> int:
        return to_us(self.settings.stream_now or datetime.now(UTC))

    def _tidy_memory(self) -> None:
        """Keep Python's cyclic GC off the window state.

        Hundreds of thousands of window objects made each full collection a pause of half a
        second or more (the consumer's worst freshness), and the state holds no reference
        cycles for it to find. Everything that survived a poll is frozen out of the collector's
        sight (cheap: a list splice), which also spares the checkpoint child's copy-on-write
        pages; every ``GC_FULL_EVERY_S`` it is unfrozen and collected once, so cycles left by
        libraries are still freed."""
        now = time.monotonic()
        if now - self._last_full_gc >= GC_FULL_EVERY_S:
            gc.unfreeze()
            gc.collect()
            self._last_full_gc = now
        gc.freeze()

    def checkpoint(self, commit: bool = True, background: bool = False) -> None:
        self.committer.checkpoint(self.parts, commit, background)

    def lag(self) -> int:
        return self.partitions.lag(self.member.consumer)

    def close(self) -> None:
        """Checkpoint, then leave the group even if that failed: the partitions move to another
        instance at once instead of after the session timeout."""
        try:
            self.checkpoint()
        finally:
            self.member.close()

    # -- rebalancing ----------------------------------------------------------------------------
    def _set_up_assigned(self) -> list[TopicPartition]:
        partitions = self.partitions.take_pending()
        self.writer.forget()  # another process may have written these keys meanwhile
        if not self.parts:
            self.committer.restart_interval()
        self.partitions.start(self.member.consumer, partitions)
        return partitions

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        """Called from the client's IO thread: save state, but make no blocking Kafka call."""
        if self.parts:
            self.checkpoint(commit=False)
        self.partitions.revoked(partitions)

    def _lost(self, partitions: list[TopicPartition]) -> None:
        """Expelled from the group: another instance may already be processing these partitions
        from the shared state, so nothing of theirs is saved or written from here."""
        log.warning("%s: expelled from the group; dropping %s unsaved (their new owner resumes from the "
                    "last checkpoint)", self.stage.name, sorted(partitions))  # fmt: skip
        self.counters.partitions_lost += len(partitions)
        self.partitions.revoked(partitions)
