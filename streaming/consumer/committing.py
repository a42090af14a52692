"""Checkpoints: make everything a stage has done durable, then commit its offsets.

Every ``checkpoint_every_s``, and once a burst drains: confirm the forwarded and dead-lettered
events in Kafka and the queued Redis writes, then append the rows to the Parquet offline store,
save each partition's state with its next offset, and commit those offsets. A saved state is
the point a restart resumes from, so it is written only once everything before it is confirmed:
the Redis writes in particular, which are the features the service reads, and which a restart
past them would never write again.

Every wait here is bounded: Kafka's by ``stream_kafka_timeout_s`` (the flush, and the producer's
own request, delivery and blocking timeouts, ``producer_timeouts``), Redis's by the writer's
socket timeout (``stream_redis_timeout_s``). A wait that runs out, or a write that fails, stops
the stage with an error that says which service, how long and which setting; nothing of that
checkpoint is saved or committed, and the restart resumes from the one before, exactly.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaProducer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from rental.settings import Settings
from streaming.consumer import checkpoint
from streaming.consumer.counters import Counters
from streaming.consumer.dead_letters import DeadLetters
from streaming.consumer.forwarding import Outbox
from streaming.consumer.joining import Membership
from streaming.consumer.partitions import PartitionState
from streaming.consumer.stages import Stage
from streaming.consumer.usage import give_back_memory
from streaming.consumer.writing import RowWriter
from streaming.feature_store.offline import STREAM_COMPRESSION, write_rows
from streaming.feature_store.online_write import OnlineWriter

DRAINED_CHECKPOINT_S = 1.0  # a drained stage checkpoints once this long has passed since its last one
KAFKA_TIMEOUT_SETTING = "RENTAL_STREAM_KAFKA_TIMEOUT_S"  # stream_kafka_timeout_s, as an operator sets it
log = logging.getLogger(__name__)


def producer_timeouts(settings: Settings) -> dict[str, int]:
    """A stage producer's timeouts, so that its sends and the checkpoint's flush end within
    ``stream_kafka_timeout_s``: a send blocks on metadata or buffer space at most that long, a
    request waits half of it (one retry fits), and a record not delivered by then fails."""
    timeout_ms = int(settings.stream_kafka_timeout_s * 1000)
    return {
        "max_block_ms": timeout_ms,
        "request_timeout_ms": max(1, timeout_ms // 2),
        "delivery_timeout_ms": timeout_ms,
    }


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

        Periodically, once ``checkpoint_max_rows`` rows wait for the offline store, and as soon
        as a burst is drained (an empty poll, or the poll that caught up with a backlog), so
        offsets and the offline store catch up with Redis within a second of the stream going
        quiet. While the previous checkpoint is still being written the next one waits, rather
        than the loop."""
        self._since_checkpoint += n
        self._catching_up |= n >= self.settings.stream_max_poll_records  # a full poll: a backlog
        since = time.monotonic() - self.last_checkpoint
        drained = n == 0 or (caught_up and self._catching_up)
        due = (
            since >= self.settings.checkpoint_every_s
            or (drained and self._since_checkpoint and since >= DRAINED_CHECKPOINT_S)
            # Catching up, a stage makes rows faster than a period bounds: the rows it holds for
            # the offline store, and the checkpoint writer's encoding of them, stay bounded.
            or self.rows.held >= self.settings.checkpoint_max_rows
        )
        return bool(due) and not self.saver.busy

    def checkpoint(self, parts: dict[TopicPartition, PartitionState], commit: bool = True,
                   background: bool = False) -> None:  # fmt: skip
        """Make everything so far durable, in an order that loses nothing, then commit.

        Forwarded and dead-lettered events are flushed and checked, and the queued Redis writes
        confirmed; only then are the rows appended to the offline store, each partition's state
        saved with its next offset, and the offsets committed. The saved offset is the one a
        restart resumes from, so it never covers a write that may not have landed; the Kafka
        commit follows it (and is skipped inside a rebalance callback, where the client may
        not block), so what Kafka shows as committed is never ahead of what is written. With
        ``background`` the saves are made by a forked child (``BackgroundSaver``) and the
        commit waits for it, while the stage goes on."""
        self.rows.write(parts.values())
        self._flush_producer()  # forwarded and dead-lettered events are in Kafka...
        failed = [f.exception for f in self.outbox.sent + self.dead_letters.take_sent() if f.failed()]
        if failed:  # ...or we stop here, before any offset moves past them
            raise RuntimeError(f"{len(failed)} forwarded or dead-lettered events were not written: {failed[0]!r}")
        self.outbox.confirmed()
        # The Redis writes (queued, see resp.HsetPipe) have landed, or this raises and nothing
        # below happens. Confirmed here in the parent, before the fork, since the child cannot
        # wait on the parent's writer: a state file saved first would be a resume point past
        # writes that may be lost. The writes ran while the stage parsed its polls and Kafka
        # was flushed, so little is left to wait for.
        try:
            self.online.flush()
        except Exception as exc:
            raise RuntimeError(f"{self.stage.name}: the Redis writes since the last checkpoint are not all confirmed "
                               f"({exc}); nothing of this checkpoint is saved or committed, and a restart resumes "
                               "from the last one") from exc  # fmt: skip
        rows = self.rows.take_offline()
        saved = [(tp, part.next_offset, part.pipeline) for tp, part in parts.items() if part.next_offset is not None]
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset, _ in saved}
        settings, view, group = self.settings, self.stage.view, self.stage.group(self.settings)

        def write() -> None:  # the offline rows, then each partition's state with its offset
            if rows is not None:
                write_rows(settings, view, rows, tag=self.stage.name, compression=STREAM_COMPRESSION)
            # The state (the seen ids sorted, the windows' arrays) is taken here: in a background
            # save by the forked child from its snapshot, so the stage never holds a second copy.
            for tp, offset, pipeline in saved:
                checkpoint.save(settings, group, tp.topic, tp.partition, offset, pipeline.state())

        def then() -> None:
            if offsets and commit:
                self._commit(offsets)

        if background:
            self.saver.start(write, then)
            del rows, write  # the child has them; the parent's copy of the rows is given back
            give_back_memory()
        else:
            self.saver.wait(run_then=commit)  # an earlier checkpoint lands first
            write()
            then()
        self.counters.checkpoints += 1
        self.last_checkpoint = time.monotonic()
        self._since_checkpoint = 0
        self._catching_up = False

    def _flush_producer(self) -> None:
        timeout_s = self.settings.stream_kafka_timeout_s
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaTimeoutError as exc:
            raise RuntimeError(
                f"{self.stage.name}: Kafka did not acknowledge the forwarded and dead-lettered events within "
                f"{timeout_s:g} s ({KAFKA_TIMEOUT_SETTING}); nothing of this checkpoint is saved or committed"
            ) from exc

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
        except (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError) as exc:
            # The group moved on (a rebalance, or this member was expelled): the partitions'
            # state is saved, and whoever owns them next resumes from it. The next poll rejoins.
            log.warning("%s: offset commit refused by the group (%s); the saved state stands", self.stage.name, exc)
            self.counters.commit_failures += 1
