"""The three stages of the feature consumer and what each one owns.

``bookings`` is keyed by item, so item popularity is computed where an item's events already
are. Customer and category features need every event of a customer or a category, which
``bookings`` spreads over all partitions: the items stage forwards each valid event, re-keyed,
to ``bookings.by-customer`` and ``bookings.by-category``, and a stage consumes each of those.
Any number of processes may run any stages; Kafka's group protocol splits the partitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kafka.partitioner.default import murmur2

from rental.settings import Settings
from streaming.events import BookingCancelled, BookingCreated
from streaming.features.pipeline import Catalogue

Event = BookingCreated | BookingCancelled


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str
    view: str
    # The key this stage's topic is partitioned by, for an event (and the entity key in its view).
    key: Callable[[Event, Catalogue], str]
    forwards: tuple[tuple[str, Callable[[Event, Catalogue], str]], ...] = ()

    def group(self, settings: Settings) -> str:
        return f"{settings.consumer_group_prefix}-{self.name}"


def _item(event: Event, catalogue: Catalogue) -> str:
    return event.item_id


def _customer(event: Event, catalogue: Catalogue) -> str:
    return event.customer_id


def _category(event: Event, catalogue: Catalogue) -> str:
    return catalogue.category[event.item_id]


def stages(settings: Settings) -> dict[str, Stage]:
    return {
        "items": Stage(
            "items", settings.topic_bookings, "item_popularity", _item,
            forwards=((settings.topic_bookings_by_customer, _customer), (settings.topic_bookings_by_category, _category)),
        ),
        "customers": Stage("customers", settings.topic_bookings_by_customer, "customer_history", _customer),
        "categories": Stage("categories", settings.topic_bookings_by_category, "category_season", _category),
    }  # fmt: skip


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner sends ``key`` to (murmur2, as the Java client)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
