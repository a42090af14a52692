"""Checkpoints: make everything a stage has done durable, then commit its offsets.

Every ``checkpoint_every_s``, and once a burst drains: flush forwarded and dead-lettered events,
append the rows to the Parquet offline store, save each partition's state with its next offset,
then commit those offsets. Offsets are therefore committed only after the features they
produced are written, and a restart resumes from the saved state: nothing is lost and nothing
counts twice.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from rental.settings import Settings
from streaming.consumer import checkpoint
from streaming.consumer.counters import Counters
from streaming.consumer.dead_letters import DeadLetters
from streaming.consumer.forwarding import Outbox
from streaming.consumer.joining import Membership
from streaming.consumer.partitions import PartitionState
from streaming.consumer.stages import Stage
from streaming.consumer.writing import RowWriter
from streaming.feature_store.offline import STREAM_COMPRESSION, write_rows
from streaming.feature_store.online_write import OnlineWriter

DRAINED_CHECKPOINT_S = 1.0  # a drained stage checkpoints once this long has passed since its last one
log = logging.getLogger(__name__)


class Committer:
    def __init__(self, stage: Stage, settings: Settings, member: Membership, rows: RowWriter, outbox: Outbox,
                 dead_letters: DeadLetters, producer: KafkaProducer, online: OnlineWriter,
                 counters: Counters):  # fmt: skip
        self.stage, self.settings, self.member = stage, settings, member
        self.rows, self.outbox, self.dead_letters = rows, outbox, dead_letters
        self.producer, self.online, self.counters = producer, online, counters
        self.saver = checkpoint.BackgroundSaver(nice=settings.stream_background_nice)
        self.last_checkpoint = time.monotonic()
        self._since_checkpoint = 0  # records read since the last checkpoint
        self._catching_up = False  # a poll since the last checkpoint came back full
        self.advanced_at: float | None = None  # when a commit last moved an offset forward
        self._committed: dict[TopicPartition, int] = {}

    @property
    def saving(self) -> bool:
        """A checkpoint is still being written (``poll`` notices one that ended)."""
        return self.saver.busy

    def poll(self) -> None:
        """If the checkpoint being written has landed, commit its offsets."""
        self.saver.poll()

    def restart_interval(self) -> None:
        """Owning nothing until now, there was nothing to save: the interval starts here."""
        self.last_checkpoint = time.monotonic()

    def due(self, n: int, caught_up: bool) -> bool:
        """After a poll of ``n`` records: is a checkpoint due and none still being written?

        Periodically, and as soon as a burst is drained (an empty poll, or the poll that caught
        up with a backlog), so offsets and the offline store catch up with Redis within a
        second of the stream going quiet. While the previous checkpoint is still being written
        the next one waits, rather than the loop."""
        self._since_checkpoint += n
        self._catching_up |= n >= self.settings.stream_max_poll_records  # a full poll: a backlog
        since = time.monotonic() - self.last_checkpoint
        drained = n == 0 or (caught_up and self._catching_up)
        due = since >= self.settings.checkpoint_every_s or (
            drained and self._since_checkpoint and since >= DRAINED_CHECKPOINT_S
        )
        return bool(due) and not self.saver.busy

    def checkpoint(self, parts: dict[TopicPartition, PartitionState], commit: bool = True,
                   background: bool = False) -> None:  # fmt: skip
        """Make everything so far durable, in an order that loses nothing, then commit.

        Forwarded and dead-lettered events are flushed and checked, the rows appended to the
        offline store, each partition's state saved with its next offset, and only then the
        offsets committed. The saved offset is the one a restart resumes from; the Kafka commit
        follows it (and is skipped inside a rebalance callback, where the client may not
        block), so what Kafka shows as committed is never ahead of what is written. With
        ``background`` the writes are made by a forked child (``BackgroundSaver``) and the
        commit waits for it, while the stage goes on."""
        self.rows.write(parts.values())
        self.producer.flush()  # forwarded and dead-lettered events are in Kafka...
        failed = [f.exception for f in self.outbox.sent + self.dead_letters.take_sent() if f.failed()]
        if failed:  # ...or we stop here, before any offset moves past them
            raise RuntimeError(f"{len(failed)} forwarded or dead-lettered events were not written: {failed[0]!r}")
        self.outbox.confirmed()
        rows = self.rows.take_offline()
        saved = [(tp, part.next_offset, part.pipeline.state()) for tp, part in parts.items()
                 if part.next_offset is not None]  # fmt: skip
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset, _ in saved}
        settings, view, group = self.settings, self.stage.view, self.stage.group(self.settings)

        def write() -> None:  # the offline rows, then each partition's state with its offset
            if rows is not None:
                write_rows(settings, view, rows, tag=self.stage.name, compression=STREAM_COMPRESSION)
            for tp, offset, state in saved:
                checkpoint.save(settings, group, tp.topic, tp.partition, offset, state)

        def then() -> None:
            self.online.flush()  # the Redis writes (queued, see resp.HsetPipe) have landed too
            if offsets and commit:
                self._commit(offsets)

        if background:
            self.saver.start(write, then)
        else:
            self.saver.wait(run_then=commit)  # an earlier checkpoint lands first
            write()
            then()
        self.counters.checkpoints += 1
        self.last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._catching_up = False

    def _commit(self, offsets: dict) -> None:
        try:
            self.member.consumer.commit(offsets)
            if any(self._committed.get(tp) != meta.offset for tp, meta in offsets.items()):
                self.advanced_at = time.time()  # the moment these events count as written
                self._committed.update({tp: meta.offset for tp, meta in offsets.items()})
        except KafkaTimeoutError as exc:
            # The saved checkpoint is what a restart resumes from; Kafka's copy of the offsets
            # only lags behind it, and the next checkpoint commits them again.
            log.warning("%s: offset commit timed out (%s); retried at the next checkpoint", self.stage.name, exc)
            self.counters.commit_retries += 1
