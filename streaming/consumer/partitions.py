"""The partitions a stage owns, each with its window state, its next offset and its own clock.

An assigned partition resumes from its checkpoint; without one, from the backfill's windows for
its keys and the records produced after the backfill's moment; without a backfill, from the
topic's beginning. Each partition's clock is its largest event time; once it is caught up the
clock follows the wall clock (or ``settings.stream_now``), so windows decay without events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from rental.settings import Settings
from streaming.consumer import checkpoint
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
        for tp in partitions:
            pipeline = FeaturePipeline(self.catalogue, views=(self.stage.view,))
            saved = checkpoint.load(self.settings, group, tp.topic, tp.partition)
            part = PartitionState(pipeline)
            if saved is not None:
                pipeline.restore(saved["state"])
                part.next_offset = saved["offset"]
                consumer.seek(tp, saved["offset"])
            else:
                backfill = backfill or checkpoint.load_backfill(self.settings)
                try:
                    if backfill is not None:
                        _start_from_backfill(consumer, tp, pipeline, backfill, part)
                    else:  # nothing saved and no backfill: the whole topic, from its beginning
                        offset = consumer.beginning_offsets([tp])[tp]
                        part.next_offset = offset
                        consumer.seek(tp, offset)
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
                         part: PartitionState) -> None:  # fmt: skip
    """No checkpoint yet: begin with the backfill's windows for this partition's keys, and
    read only what was produced after the backfill's moment."""
    n = len(consumer.partitions_for_topic(tp.topic) or ()) or 1
    pipeline.restore(backfill["state"] | {"engines": {
        view: state for view, state in _split(backfill["state"], lambda key: partition_of(str(key), n) == tp.partition).items()
    }, "dedup": None})  # fmt: skip
    found = consumer.offsets_for_times({tp: int(backfill["as_of"].timestamp() * 1000)}).get(tp)
    offset = found.offset if found is not None else consumer.end_offsets([tp])[tp]
    part.next_offset = offset
    consumer.seek(tp, offset)


def _split(state: dict, keep) -> dict:
    """The backfill's engines, each restricted to the keys ``keep`` accepts."""
    from streaming.features.windows import WindowEngine

    out = {}
    for view, engine_state in state["engines"].items():
        engine = WindowEngine.__new__(WindowEngine)
        engine.restore(engine_state)
        out[view] = engine.state(keep)
    return out
