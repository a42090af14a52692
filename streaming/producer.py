"""Publishing booking events to Kafka the way the rental app does: keyed by item, acks=all."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kafka import KafkaProducer
from kafka.serializer import Serializer

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.events import BookingCancelled, BookingCreated, encode

Event = BookingCreated | BookingCancelled


class ItemKey(Serializer):
    """Keys are item ids; Kafka's default partitioner then keeps one item's events in order."""

    def serialize(self, topic, headers, data) -> bytes:
        return data.encode()


def make_producer(settings: Settings, **overrides) -> KafkaProducer:
    """acks=all so an acknowledged event survives a broker restart; key = item id keeps order."""
    options = dict(
        **kafka_options(settings),
        acks="all",
        linger_ms=5,
        batch_size=64 * 1024,
        enable_idempotence=True,  # retries neither duplicate nor reorder an item's events
        compression_type="lz4",
        key_serializer=ItemKey(),
        client_id="rental-producer",
    )
    options.update(overrides)
    return KafkaProducer(**options)


def send_events(
    producer: KafkaProducer,
    topic: str,
    events: Iterable[Event],
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send events (at ``rate`` per second if given); return how many were sent and flushed."""
    start = time.perf_counter()
    sent = 0
    for event in events:
        if rate:
            ahead = start + sent / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        producer.send(topic, key=event.item_id, value=encode(event))
        sent += 1
        if on_sent and sent % 100 == 0:
            on_sent(100)
    producer.flush()
    if on_sent:
        on_sent(sent % 100)
    return sent
