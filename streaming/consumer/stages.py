"""The three stages of the feature consumer and what each one owns.

``bookings`` is keyed by item, so item popularity is computed where an item's events already
are. Customer and category features need every event of a customer or a category, which
``bookings`` spreads over all partitions: the items stage forwards each valid event, re-keyed,
to ``bookings.by-customer`` and ``bookings.by-category``, and a stage consumes each of those.
Any number of processes may run any stages; Kafka's group protocol splits the partitions.

Forwarded events travel in batches, one Kafka message per poll and target partition, sent to
that partition explicitly (the default partitioner's choice for the key, so the routing is the
same as keyed messages): kafka-python spends ~100 µs per send, which per event would cost more
than computing the features. A batch is the pipeline's input tuples, already validated:

    {"schema_version": 1, "events": [[kind, event_id, item_id, customer_id, time_us,
                                       price_pence, rental_days], ...]}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rental.settings import Settings
from streaming.features.pipeline import Catalogue


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str
    view: str
    # The key this stage's topic is partitioned by, for an event (and the entity key in its view).
    key: Callable[[tuple, Catalogue], str]
    reads_batches: bool  # forwarded batches of tuples, not the rental app's events
    forwards: tuple[tuple[str, Callable[[tuple, Catalogue], str]], ...] = ()

    def group(self, settings: Settings) -> str:
        return f"{settings.consumer_group_prefix}-{self.name}"


# Keys are read from the pipeline's input tuple: (kind, event_id, item_id, customer_id, ...).
def _item(args: tuple, catalogue: Catalogue) -> str:
    return args[2]


def _customer(args: tuple, catalogue: Catalogue) -> str:
    return args[3]


def _category(args: tuple, catalogue: Catalogue) -> str:
    return catalogue.category[args[2]]


def stages(settings: Settings) -> dict[str, Stage]:
    return {
        "items": Stage(
            "items", settings.topic_bookings, "item_popularity", _item, reads_batches=False,
            forwards=((settings.topic_bookings_by_customer, _customer), (settings.topic_bookings_by_category, _category)),
        ),
        "customers": Stage("customers", settings.topic_bookings_by_customer, "customer_history", _customer, reads_batches=True),
        "categories": Stage("categories", settings.topic_bookings_by_category, "category_season", _category, reads_batches=True),
    }  # fmt: skip
