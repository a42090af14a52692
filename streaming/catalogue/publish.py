"""Listing items as the rental app does: each item's row to the items topic, keyed by its id.

The topic is compacted, so it keeps each item's latest listing for ever and any reader that
starts from its beginning rebuilds the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kafka import KafkaProducer

from rental.settings import Settings
from streaming.catalogue.listing import Listing
from streaming.producer import make_producer


def publish(settings: Settings, items: Iterable[Listing], producer: KafkaProducer | None = None,
            on_sent: Callable[[int], None] | None = None) -> int:  # fmt: skip
    """Send every listing (acks=all) and wait until each is in Kafka; return how many."""
    own = producer is None
    producer = producer or make_producer(settings, client_id="rental-catalogue")
    try:
        futures = []
        for listing in items:
            futures.append(producer.send(settings.topic_items, key=listing.item_id, value=listing.encode()))
            if on_sent and len(futures) % 1_000 == 0:
                on_sent(1_000)
        producer.flush(timeout=settings.stream_kafka_timeout_s)
        for future in futures:
            future.get(timeout=settings.stream_kafka_timeout_s)  # raises the first failed send
        if on_sent:
            on_sent(len(futures) % 1_000)
        return len(futures)
    finally:
        if own:
            producer.close()
