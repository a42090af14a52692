"""The events a stage forwards to the next stages' topics, re-keyed, in batches.

Events are queued per target partition while a poll is processed and sent once after it, one
Arrow IPC batch per message (see ``stages``). The futures are kept until a checkpoint has seen
every one succeed: no offset is committed past an event that was not forwarded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from kafka import KafkaProducer

from streaming.features.event_batch import EventBatch
from streaming.features.pipeline import Catalogue
from streaming.wire.partitioning import partitions_of

FORWARD_BATCH = 5_000  # events per forwarded message: ~350 KB, well under Kafka's 1 MB message limit


class Outbox:
    def __init__(self, forwards: tuple[tuple[str, Callable[[EventBatch, Catalogue], list[str]]], ...],
                 catalogue: Catalogue, producer: KafkaProducer):  # fmt: skip
        self.forwards, self.catalogue, self.producer = forwards, catalogue, producer
        self.sent: list = []  # futures of forwarded batches since the last checkpoint
        self._queued: dict[tuple[str, int], list[EventBatch]] = {}  # (topic, partition) -> events to forward
        self._partitions: dict[str, int] = {}  # forwarded topic -> its partition count

    def add(self, events: EventBatch) -> None:
        """Queue applied events for each forwarded topic, split by the partition of their key there."""
        for topic, key in self.forwards:
            count = self._partitions.get(topic) or self._partitions.setdefault(
                topic, len(self.producer.partitions_for(topic))
            )
            targets = partitions_of(key(events, self.catalogue), count)
            for target in np.unique(targets).tolist():
                self._queued.setdefault((topic, target), []).append(events.take(targets == target))

    def send(self) -> None:
        for (topic, partition), batches in self._queued.items():
            events = EventBatch.concat(batches)
            for start in range(0, len(events), FORWARD_BATCH):
                value = events.take(slice(start, start + FORWARD_BATCH)).to_ipc()
                self.sent.append(self.producer.send(topic, value=value, partition=partition))
        self._queued = {}

    def confirmed(self) -> None:
        """Every batch sent so far is in Kafka: stop tracking them. Until then a failed one stays
        in ``sent``, so every later checkpoint refuses too."""
        self.sent = []
