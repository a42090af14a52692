"""The partitions a stage owns, each with its window state, its next offset and its own clock.

An assigned partition resumes from its checkpoint in ``settings.state_dir``, the directory every
instance of the stage shares, wherever it runs; without one, from the backfill's windows for its
keys and the records produced after the backfill's moment; without a backfill, from the topic's
beginning. A start that would give windows missing some of their events refuses instead
(``StartRefused``, saying what to do): the group has committed offsets but the state directory
holds no state (it is not the one the other instances share), or retention has deleted events
the windows still need. A checkpoint older than the group's committed offset is a valid start:
its events are read again and counted once.

Each partition's clock is its largest event time; once it is caught up the clock follows the
wall clock (or ``settings.stream_now``), so windows decay without events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from rental.settings import Settings
from streaming.consumer import checkpoint
from streaming.consumer.errors import StartRefused
from streaming.consumer.stages import Stage
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.wire.partitioning import partition_of

log = logging.getLogger(__name__)


@dataclass
class PartitionState:
    pipeline: FeaturePipeline
    next_offset: int | None = None  # None until the first record (position decides)


class Partitions:
    """``owned``: the partitions set up and being read. ``pending``: assigned during a poll, set
    up after it (a rebalance callback may make no blocking Kafka call)."""

    def __init__(self, settings: Settings, stage: Stage, catalogue: Catalogue):
        self.settings, self.stage, self.catalogue = settings, stage, catalogue
        self.owned: dict[TopicPartition, PartitionState] = {}
        self.pending: list[TopicPartition] = []

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self.pending.extend(partitions)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Given up (after saving, a revocation) or lost (not saved: another instance has them)."""
        for tp in partitions:
            self.owned.pop(tp, None)
        self.pending = [tp for tp in self.pending if tp not in partitions]

    def take_pending(self) -> list[TopicPartition]:
        partitions, self.pending = self.pending, []
        return partitions

    def start(self, consumer: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Restore each partition's windows and seek it to where they leave off. One whose start
        cannot be found yet (a slow broker) goes back to ``pending``, set up after the next poll."""
        group = self.stage.group(self.settings)
        backfill = None
        try:
            beginnings = consumer.beginning_offsets(partitions) if partitions else {}
        except KafkaTimeoutError as exc:
            log.warning("%s: could not find where %s start (%s); retrying", self.stage.name, partitions, exc)
            self.pending.extend(partitions)
            return
        for tp in partitions:
            pipeline = FeaturePipeline(self.catalogue, views=(self.stage.view,))
            saved = checkpoint.load(self.settings, group, tp.topic, tp.partition)
            part = PartitionState(pipeline)
            beginning = beginnings[tp]
            if saved is not None:
                if saved["offset"] < beginning:
                    raise StartRefused(_lost_to_retention(self.settings, group, tp, saved["offset"], beginning))
                pipeline.restore(saved["state"])
                part.next_offset = saved["offset"]
                consumer.seek(tp, saved["offset"])
                self.owned[tp] = part
                continue
            committed = consumer.committed(tp)
            if committed is not None:
                raise StartRefused(_no_shared_state(self.settings, self.stage.name, group, tp, committed))
            backfill = backfill or checkpoint.load_backfill(self.settings)
            try:
                if backfill is not None:
                    _start_from_backfill(consumer, tp, pipeline, backfill, part, beginning)
                elif beginning > 0:  # the topic's first events are gone: windows from here would miss them
                    raise StartRefused(
                        f"{tp.topic}[{tp.partition}] no longer holds its first events (it begins at offset "
                        f"{beginning}) and there is no backfill in {self.settings.state_dir}: run "
                        "`rental features backfill` (with RENTAL_STATE_DIR set as for the stages) first."
                    )
                else:  # nothing saved, no backfill, the whole topic: from its beginning
                    part.next_offset = beginning
                    consumer.seek(tp, beginning)
            except KafkaTimeoutError as exc:  # a slow broker: set it up again after the next poll
                log.warning("%s: could not find where %s starts (%s); retrying", self.stage.name, tp, exc)
                self.pending.append(tp)
                continue
            self.owned[tp] = part

    def advance_idle(self, consumer: KafkaConsumer, now_us: int) -> bool:
        """Decay the windows of partitions with nothing left to read; True if that is all of them."""
        all_caught_up = True
        for tp, part in self.owned.items():
            highwater = consumer.highwater(tp)
            if highwater is not None and part.next_offset is not None and part.next_offset >= highwater:
                part.pipeline.advance(now_us)
            else:
                all_caught_up = False
        return all_caught_up

    def lag(self, consumer: KafkaConsumer) -> int:
        total = 0
        for tp, part in self.owned.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                total += max(0, highwater - (part.next_offset or 0))
        return total


def _start_from_backfill(consumer: KafkaConsumer, tp: TopicPartition, pipeline: FeaturePipeline, backfill: dict,
                         part: PartitionState, beginning: int) -> None:  # fmt: skip
    """No checkpoint yet: begin with the backfill's windows for this partition's keys, and
    read only what was produced after the backfill's moment."""
    found = consumer.offsets_for_times({tp: int(backfill["as_of"].timestamp() * 1000)}).get(tp)
    if found is not None and found.offset <= beginning and beginning > 0:
        # The oldest event kept is the first after the moment: those before it, deleted, may
        # have been after the moment too.
        raise StartRefused(
            f"the backfill's moment {backfill['as_of']} is not inside what {tp.topic}[{tp.partition}] still holds "
            f"(it begins at offset {beginning}): run `rental features backfill` again, then start the stages."
        )
    n = len(consumer.partitions_for_topic(tp.topic) or ()) or 1
    pipeline.restore(backfill["state"] | {"engines": {
        view: state for view, state in _split(backfill["state"], lambda key: partition_of(str(key), n) == tp.partition).items()
    }, "dedup": None})  # fmt: skip
    offset = found.offset if found is not None else consumer.end_offsets([tp])[tp]
    part.next_offset = offset
    consumer.seek(tp, offset)


def _no_shared_state(settings: Settings, stage: str, group: str, tp: TopicPartition, committed: int) -> str:
    return (
        f"group {group} has committed offset {committed} on {tp.topic}[{tp.partition}], but {settings.state_dir} "
        "holds no state for it, so this instance cannot know the windows of the events before that offset. "
        "Point RENTAL_STATE_DIR at the directory the stage's other instances write (a volume they share), "
        f"or start the stage over from the backfill: `rental stream reset --stage {stage}`."
    )


def _lost_to_retention(settings: Settings, group: str, tp: TopicPartition, saved: int, beginning: int) -> str:
    return (
        f"the state of {group} for {tp.topic}[{tp.partition}] in {settings.state_dir} resumes at offset {saved}, "
        f"but the topic now begins at {beginning}: retention deleted events its windows need. Run "
        "`rental features backfill`, then `rental stream reset` to start the stages from it."
    )


def _split(state: dict, keep) -> dict:
    """The backfill's engines, each restricted to the keys ``keep`` accepts."""
    from streaming.features.windows import WindowEngine

    out = {}
    for view, engine_state in state["engines"].items():
        engine = WindowEngine.__new__(WindowEngine)
        engine.restore(engine_state)
        out[view] = engine.state(keep)
    return out
