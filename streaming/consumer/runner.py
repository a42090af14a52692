"""One stage of the live feature consumer: Kafka records in, features in Redis and Parquet out.

Per poll: decode and check each event (bad ones to the DLQ), apply it to its partition's
window state, write the changed entities to Redis, and keep the rows for the offline store.
Every ``checkpoint_every_s``, and once a burst drains: flush forwarded and dead-lettered events,
append the rows to the Parquet offline store, save each partition's state with its next offset,
then commit those offsets. Offsets are therefore committed only after the features they
produced are written, and a restart resumes from the saved state: nothing is lost and nothing
counts twice.

Each partition has its own clock (its largest event time); when a partition is caught up its
clock follows the wall clock (or ``settings.stream_now``), so windows decay without events.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from rental.settings import Settings
from streaming.consumer import checkpoint
from streaming.consumer.dead_letters import DeadLetters
from streaming.consumer.decoding import decode_many
from streaming.consumer.stages import Stage
from streaming.events import to_us
from streaming.feature_store.offline import STREAM_COMPRESSION, write_rows
from streaming.feature_store.online_write import OnlineWriter
from streaming.features.event_batch import EventBatch
from streaming.features.pipeline import APPLIED, DUPLICATE, UNKNOWN_ITEM, Catalogue, FeaturePipeline
from streaming.wire.partitioning import partition_of, partitions_of
from streaming.wire.record_blocks import RecordColumns, read_blocks

GC_FULL_EVERY_S = 600.0
DRAINED_CHECKPOINT_S = 1.0  # a drained stage checkpoints once this long has passed since its last one
SAVING_POLL_MS = 10  # poll timeout while a checkpoint is being written
FORWARD_BATCH = 5_000  # events per forwarded message: ~350 KB, well under Kafka's 1 MB message limit
log = logging.getLogger(__name__)


def fetch_options(settings: Settings) -> dict:
    """How much a poll fetches and returns: the stage's consumer and the benchmark's raw one alike."""
    return {"max_poll_records": settings.stream_max_poll_records, "max_partition_fetch_bytes": 4 * 1024 * 1024}


def join_group(settings: Settings, topic: str, group: str, client_id: str,
               listener: ConsumerRebalanceListener) -> KafkaConsumer:  # fmt: skip
    """A stage's consumer in its group, its polls returning each partition's records as columns
    (``record_blocks``); offsets are committed by the stage, after its writes."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, client_id=client_id,
                             enable_auto_commit=False, auto_offset_reset="earliest", **fetch_options(settings))  # fmt: skip
    consumer.subscribe([topic], listener=listener)
    # The topic's partitions known to the coordinator before the first JoinGroup. Otherwise,
    # when that metadata arrives after the join (under load it took 0.5 s), kafka-python 3.0
    # rejoins, and a poll that times out inside that second round loses it (need_rejoin turns
    # False before its SyncGroup answer is applied): the stage then owned nothing until
    # rejoin_if_never_assigned, 30 s later, spinning a core meanwhile; 4 of 9 benchmark runs.
    # ``topics()`` always fetches metadata, and every metadata update refreshes the snapshot.
    consumer.topics()
    return read_blocks(consumer)


@dataclass
class PartitionState:
    pipeline: FeaturePipeline
    next_offset: int | None = None  # None until the first record (position decides)


@dataclass
class Counters:
    events: int = 0
    duplicates: int = 0
    rows_online: int = 0
    checkpoints: int = 0
    commit_retries: int = 0


class StageRunner:
    def __init__(self, stage: Stage, settings: Settings, catalogue: Catalogue, writer: OnlineWriter,
                 producer: KafkaProducer, dead_letters: DeadLetters, poll_timeout_ms: int | None = None):  # fmt: skip
        self.stage = stage
        self.settings = settings
        self.catalogue = catalogue
        self.writer = writer
        self.producer = producer
        self.dead_letters = dead_letters
        self.parts: dict[TopicPartition, PartitionState] = {}
        self._pending: list[TopicPartition] = []  # assigned during a poll, set up after it
        self._sent: list = []  # futures of forwarded batches since the last checkpoint
        self._outbox: dict[tuple[str, int], list[EventBatch]] = {}  # (topic, partition) -> events to forward
        self._partitions: dict[str, int] = {}  # forwarded topic -> its partition count
        self.offline_rows: list[pa.Table] = []
        self.counters = Counters()
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0  # records read since the last checkpoint
        self._catching_up = False  # a poll since the last checkpoint came back full
        self._last_full_gc = time.monotonic()
        self.saver = checkpoint.BackgroundSaver(nice=settings.stream_background_nice)
        self._poll_timeout_ms = poll_timeout_ms or settings.stream_poll_timeout_ms
        self.consumer = self._join()
        self._joined_at = time.monotonic()
        self.rejoins = 0
        self.polled_at: float | None = None
        self.advanced_at: float | None = None  # when a commit last moved an offset forward
        self._committed: dict[TopicPartition, int] = {}

    def _join(self) -> KafkaConsumer:
        return join_group(self.settings, self.stage.topic, self.stage.group(self.settings),
                          f"features-{self.stage.name}", _Rebalance(self))  # fmt: skip

    def rejoin_if_never_assigned(self, after_s: float = 30.0, attempts: int = 3) -> None:
        """A safety net for a member that never receives its assignment and never rejoins (the
        kafka-python 3.0 race ``join_group`` avoids at startup; a later metadata rejoin could
        still meet it). A fresh consumer joins again; it owns nothing yet, so nothing is lost."""
        if self.parts or self._pending or self.rejoins >= attempts:
            return
        if time.monotonic() - self._joined_at < after_s:
            return
        log.warning("%s: no partitions after %.0f s; joining the group again", self.stage.name, after_s)
        self.consumer.close(autocommit=False)
        self.consumer = self._join()
        self._joined_at = time.monotonic()
        self.rejoins += 1

    # -- the loop -------------------------------------------------------------------------------
    def poll_once(self) -> int:
        """Process what one poll returns; return how many records it held."""
        if not self.parts and not self._pending:
            # Joining the group, or nothing to own. One whole poll, never a short poll and a
            # sleep: kafka-python 3.0 drops a JoinGroup/SyncGroup round that completes between
            # two polls and starts another, so with 10 ms polls a stage under load rejoined up to
            # ~40 times and took 2-3 s to get its partitions.
            self.consumer.poll(timeout_ms=self._poll_timeout_ms)
            if not self._pending:
                return 0
        self.polled_at = time.time()  # busy time starts when the poll that returns the first records is made
        # While a checkpoint is being written, short polls: its commit follows within a few ms
        # of the child's exit instead of a whole poll timeout later.
        timeout_ms = min(self._poll_timeout_ms, SAVING_POLL_MS) if self.saver.busy else self._poll_timeout_ms
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.stream_max_poll_records)
        if self._pending:  # every new partition is sought to its start; records fetched before that are dropped
            for tp in self._setup_assigned():
                batches.pop(tp, None)
        n = 0
        for tp, blocks in batches.items():
            part = self.parts.get(tp)
            if part is None:  # revoked while the poll was in flight
                continue
            records = RecordColumns.concat(blocks)
            self._handle(part, records)
            part.next_offset = int(records.offsets[-1]) + 1
            n += len(records)
        self._send_outbox()
        caught_up = self._advance_idle_partitions()
        self._write_rows()
        self.saver.poll()
        self._tidy_memory()
        self._since_checkpoint += n
        self._catching_up |= n >= self.settings.stream_max_poll_records  # a full poll: a backlog
        since = time.monotonic() - self._last_checkpoint
        # Periodically, and as soon as a burst is drained (an empty poll, or the poll that caught
        # up with a backlog), so offsets and the offline store catch up with Redis within a
        # second of the stream going quiet. While the previous checkpoint is still being written
        # the next one waits, rather than the loop.
        drained = n == 0 or (caught_up and self._catching_up)
        due = since >= self.settings.checkpoint_every_s or (
            drained and self._since_checkpoint and since >= DRAINED_CHECKPOINT_S
        )
        if due and not self.saver.busy:
            self.checkpoint(background=True)
        return n

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

    def _handle(self, part: PartitionState, records: RecordColumns) -> None:
        """Decode a partition's records (bad ones to the DLQ), apply the events in one call,
        and queue what the stage forwards."""
        batch, owner = self._decode(records)  # owner: the record each event came from
        if not len(batch):
            return
        status = part.pipeline.process_batch(batch)
        for i in np.flatnonzero(status == UNKNOWN_ITEM).tolist():
            self.dead_letters.send(records.record(owner[i]), f"item_id: unknown item {batch.item_id[i]!r}")
        applied = status == APPLIED
        self.counters.duplicates += int(np.count_nonzero(status == DUPLICATE))
        self.counters.events += int(np.count_nonzero(applied))
        if not self.stage.forwards or not applied.any():
            return
        applied_events = batch if applied.all() else batch.take(applied)
        for topic, key in self.stage.forwards:
            count = self._partitions.get(topic) or self._partitions.setdefault(
                topic, len(self.producer.partitions_for(topic))
            )
            targets = partitions_of(key(applied_events, self.catalogue), count)
            for target in np.unique(targets).tolist():
                self._outbox.setdefault((topic, target), []).append(applied_events.take(targets == target))

    def _decode(self, records: RecordColumns) -> tuple[EventBatch, list[int]]:
        """The valid events of a poll's records as columns, and for each the index of its record."""
        owner: list[int] = []
        if self.stage.reads_batches:
            batches = []
            for i in range(len(records)):
                try:
                    batch = EventBatch.forwarded(records.value(i))
                except ValueError as exc:
                    self.dead_letters.send(records.record(i), f"forwarded batch: {exc}")
                    continue
                batches.append(batch)
                owner += [i] * len(batch)
            return (EventBatch.concat(batches) if batches else EventBatch.empty()), owner
        batch, owner, errors = decode_many(records.values, records.value_ends)
        for i, reason in errors:
            self.dead_letters.send(records.record(i), reason)
        return batch, owner

    def _send_outbox(self) -> None:
        for (topic, partition), batches in self._outbox.items():
            events = EventBatch.concat(batches)
            for start in range(0, len(events), FORWARD_BATCH):
                value = events.take(slice(start, start + FORWARD_BATCH)).to_ipc()
                self._sent.append(self.producer.send(topic, value=value, partition=partition))
        self._outbox = {}

    def _now_us(self) -> int:
        return to_us(self.settings.stream_now or datetime.now(UTC))

    def _advance_idle_partitions(self) -> bool:
        """Decay the windows of partitions with nothing left to read; True if that is all of them."""
        now_us, all_caught_up = self._now_us(), True
        for tp, part in self.parts.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None and part.next_offset is not None and part.next_offset >= highwater:
                part.pipeline.advance(now_us)
            else:
                all_caught_up = False
        return all_caught_up

    def _write_rows(self) -> None:
        view = self.stage.view
        engines = [part.pipeline.engines[view] for part in self.parts.values()]
        tables = [engine.take_table() for engine in engines if engine.pending]  # most partitions: none
        if tables:
            rows = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            self.counters.rows_online += self.writer.write(view, rows)
            self.offline_rows.append(rows)

    def checkpoint(self, commit: bool = True, background: bool = False) -> None:
        """Make everything so far durable, in an order that loses nothing, then commit.

        Forwarded and dead-lettered events are flushed and checked, the rows appended to the
        offline store, each partition's state saved with its next offset, and only then the
        offsets committed. The saved offset is the one a restart resumes from; the Kafka commit
        follows it (and is skipped inside a rebalance callback, where the client may not
        block), so what Kafka shows as committed is never ahead of what is written. With
        ``background`` the writes are made by a forked child (``BackgroundSaver``) and the
        commit waits for it, while this loop goes on."""
        self._write_rows()
        self.producer.flush()  # forwarded and dead-lettered events are in Kafka...
        failed = [f.exception for f in self._sent + self.dead_letters.take_sent() if f.failed()]
        if failed:  # ...or we stop here, before any offset moves past them
            raise RuntimeError(f"{len(failed)} forwarded or dead-lettered events were not written: {failed[0]!r}")
        self._sent = []
        tables, self.offline_rows = self.offline_rows, []
        rows = pa.concat_tables(tables) if tables else None
        saved = [(tp, part.next_offset, part.pipeline.state()) for tp, part in self.parts.items()
                 if part.next_offset is not None]  # fmt: skip
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset, _ in saved}
        settings, view, group = self.settings, self.stage.view, self.stage.group(self.settings)

        def write() -> None:  # the offline rows, then each partition's state with its offset
            if rows is not None:
                write_rows(settings, view, rows, tag=self.stage.name, compression=STREAM_COMPRESSION)
            for tp, offset, state in saved:
                checkpoint.save(settings, group, tp.topic, tp.partition, offset, state)

        def then() -> None:
            self.writer.flush()  # the Redis writes (queued, see resp.HsetPipe) have landed too
            if offsets and commit:
                self._commit(offsets)

        if background:
            self.saver.start(write, then)
        else:
            self.saver.wait(run_then=commit)  # an earlier checkpoint lands first
            write()
            then()
        self.counters.checkpoints += 1
        self._last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._catching_up = False

    def _commit(self, offsets: dict) -> None:
        try:
            self.consumer.commit(offsets)
            if any(self._committed.get(tp) != meta.offset for tp, meta in offsets.items()):
                self.advanced_at = time.time()  # the moment these events count as written
                self._committed.update({tp: meta.offset for tp, meta in offsets.items()})
        except KafkaTimeoutError as exc:
            # The saved checkpoint is what a restart resumes from; Kafka's copy of the offsets
            # only lags behind it, and the next checkpoint commits them again.
            log.warning("%s: offset commit timed out (%s); retried at the next checkpoint", self.stage.name, exc)
            self.counters.commit_retries += 1

    def lag(self) -> int:
        total = 0
        for tp, part in self.parts.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                total += max(0, highwater - (part.next_offset or 0))
        return total

    def close(self) -> None:
        self.checkpoint()
        self.consumer.close(autocommit=False)

    # -- rebalancing ----------------------------------------------------------------------------
    def _setup_assigned(self) -> list[TopicPartition]:
        group = self.stage.group(self.settings)
        backfill = None
        partitions, self._pending = self._pending, []
        self.writer.forget()  # another process may have written these keys meanwhile
        if not self.parts:  # owning nothing until now, there was nothing to save: the interval starts here
            self._last_checkpoint = time.monotonic()
        for tp in partitions:
            pipeline = FeaturePipeline(self.catalogue, views=(self.stage.view,))
            saved = checkpoint.load(self.settings, group, tp.topic, tp.partition)
            part = PartitionState(pipeline)
            if saved is not None:
                pipeline.restore(saved["state"])
                part.next_offset = saved["offset"]
                self.consumer.seek(tp, saved["offset"])
            else:
                backfill = backfill or checkpoint.load_backfill(self.settings)
                try:
                    if backfill is not None:
                        self._start_from_backfill(tp, pipeline, backfill, part)
                    else:  # nothing saved and no backfill: the whole topic, from its beginning
                        offset = self.consumer.beginning_offsets([tp])[tp]
                        part.next_offset = offset
                        self.consumer.seek(tp, offset)
                except KafkaTimeoutError as exc:  # a slow broker: set it up again after the next poll
                    log.warning("%s: could not find where %s starts (%s); retrying", self.stage.name, tp, exc)
                    self._pending.append(tp)
                    continue
            self.parts[tp] = part
        return partitions

    def _start_from_backfill(self, tp: TopicPartition, pipeline: FeaturePipeline, backfill: dict, part) -> None:
        """No checkpoint yet: begin with the backfill's windows for this partition's keys, and
        read only what was produced after the backfill's moment."""
        n = len(self.consumer.partitions_for_topic(tp.topic) or ()) or 1
        pipeline.restore(backfill["state"] | {"engines": {
            view: state for view, state in _split(backfill["state"], lambda key: partition_of(str(key), n) == tp.partition).items()
        }, "dedup": None})  # fmt: skip
        found = self.consumer.offsets_for_times({tp: int(backfill["as_of"].timestamp() * 1000)}).get(tp)
        offset = found.offset if found is not None else self.consumer.end_offsets([tp])[tp]
        part.next_offset = offset
        self.consumer.seek(tp, offset)

    def revoked(self, partitions) -> None:
        """Called from the client's IO thread: save state, but make no blocking Kafka call."""
        if self.parts:
            self.checkpoint(commit=False)
        for tp in partitions:
            self.parts.pop(tp, None)
        self._pending = [tp for tp in self._pending if tp not in partitions]


def _split(state: dict, keep) -> dict:
    """The backfill's engines, each restricted to the keys ``keep`` accepts."""
    from streaming.features.windows import WindowEngine

    out = {}
    for view, engine_state in state["engines"].items():
        engine = WindowEngine.__new__(WindowEngine)
        engine.restore(engine_state)
        out[view] = engine.state(keep)
    return out


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: StageRunner):
        self.runner = runner

    def on_partitions_revoked(self, revoked):
        self.runner.revoked(revoked)

    def on_partitions_assigned(self, assigned):
        self.runner._pending.extend(assigned)
