"""The three stages of the feature consumer and what each one owns.

``bookings`` is keyed by item, so item popularity is computed where an item's events already
are. Customer and category features need every event of a customer or a category, which
``bookings`` spreads over all partitions: the items stage forwards each valid event, re-keyed,
to ``bookings.by-customer`` and ``bookings.by-category``, and a stage consumes each of those.
Any number of processes may run any stages; Kafka's group protocol splits the partitions.

Forwarded events travel in batches, one Kafka message per poll and target partition (up to
``forwarding.FORWARD_BATCH`` events), sent to that partition explicitly (the default partitioner's
choice for the key, so the routing is the same as keyed messages): kafka-python spends ~100 µs
per send, which per event would cost more than computing the features. A batch is the validated
events as columns, one Arrow IPC stream (``event_batch.EventBatch``), which the next stage reads
without decoding each event again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rental.settings import Settings
from streaming.features.event_batch import EventBatch
from streaming.features.pipeline import Catalogue


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str
    view: str
    # The key this stage's topic is partitioned by, for each event (and the entity key in its view).
    key: Callable[[EventBatch, Catalogue], list[str]]
    reads_batches: bool  # forwarded batches of tuples, not the rental app's events
    forwards: tuple[tuple[str, Callable[[EventBatch, Catalogue], list[str]]], ...] = ()

    def group(self, settings: Settings) -> str:
        return f"{settings.consumer_group_prefix}-{self.name}"


def _item(events: EventBatch, catalogue: Catalogue) -> list[str]:
    return events.item_id.tolist()


def _customer(events: EventBatch, catalogue: Catalogue) -> list[str]:
    return events.customer_id.tolist()


def _category(events: EventBatch, catalogue: Catalogue) -> list[str]:
    return list(map(catalogue.category.__getitem__, events.item_id))


def stages(settings: Settings) -> dict[str, Stage]:
    return {
        "items": Stage(
            "items", settings.topic_bookings, "item_popularity", _item, reads_batches=False,
            forwards=((settings.topic_bookings_by_customer, _customer), (settings.topic_bookings_by_category, _category)),
        ),
        "customers": Stage("customers", settings.topic_bookings_by_customer, "customer_history", _customer, reads_batches=True),
        "categories": Stage("categories", settings.topic_bookings_by_category, "category_season", _category, reads_batches=True),
    }  # fmt: skip
