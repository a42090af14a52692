"""A test world's Kafka side: its own topics for the session, and bookings sent to them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

from rental.servers.topics import admin_client, ensure_topics
from rental.settings import Settings


@contextmanager
def world_topics(bootstrap_servers: str, world: Settings) -> Iterator[None]:
    """Every topic the world's settings name, kept an hour at most, deleted afterwards."""
    specs = world.topic_specs()
    with admin_client(bootstrap_servers) as admin:
        ensure_topics(admin, {name: (specs[name][0], 3600 * 1000) for name in specs})
    try:
        yield
    finally:
        with admin_client(bootstrap_servers) as admin:
            admin.delete_topics(list(specs), raise_errors=False)


def send_bookings(
    world: Settings, item: str, customer: str, rental_start: date, n: int = 12, tag: str = "test"
) -> None:
    """``n`` bookings of one item made now, three days each at 150 a day: enough to move its features."""
    from streaming.events import BookingCreated, encode
    from streaming.producer import make_producer

    producer = make_producer(world)
    now = datetime.now(UTC)
    for k in range(n):
        event = BookingCreated(
            event_id=f"{tag}-{uuid.uuid4().hex}", booking_id=f"{tag}-{uuid.uuid4().hex[:12]}", item_id=item,
            customer_id=customer, event_time=now + timedelta(milliseconds=k), rental_start=rental_start,
            rental_days=3, price_per_day=150.0,
        )  # fmt: skip
        producer.send(world.topic_bookings, key=item, value=encode(event))
    producer.flush()
    producer.close()
