"""10,000 booking events through the real broker, then a broker restart: nothing is lost.

Checks the contracts the pipeline relies on: acks=all writes are all readable exactly once by a
consumer group, one item's events stay ordered in one partition (key = item id), and both the
data and the group's committed offsets survive a broker restart. The broker is one of the test's
own (its own data directory and ports), so restarting it bounces no one else's.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from rental.connections import kafka_options
from rental.servers.kafka import KafkaServer
from rental.settings import get_settings
from streaming.events import BookingCancelled, BookingCreated, decode, encode
from streaming.simulator.history import simulate
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig
from tests.worlds.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

N_EVENTS = 10_000
PARTITIONS = 4
N_ITEMS = 500


def make_events(n: int) -> list[BookingCreated | BookingCancelled]:
    """The first ``n`` events of a small simulated history, as the rental app would send them.

    The seed is fresh per run so booking ids (and so event ids) never repeat across runs.
    """
    config = SimulationConfig(
        seed=int(uuid.uuid4().int % 10**6), items=N_ITEMS, bookings=int(n * 1.2), end=date(2026, 6, 1)
    )
    events = list(itertools.islice(history_events(simulate(config).bookings), n))
    assert len(events) == n
    return events


def produce(bootstrap: str, topic: str, events: list[BookingCreated | BookingCancelled]) -> dict[str, int]:
    """Send with acks=all keyed by item id; return event_id -> partition from the broker's acks."""
    producer = KafkaProducer(**kafka_options(get_settings(), bootstrap), acks="all", linger_ms=10,
                             batch_size=64 * 1024)  # fmt: skip
    try:
        futures = [(e.event_id, producer.send(topic, key=e.item_id.encode(), value=encode(e))) for e in events]
        producer.flush(timeout=60)
        return {event_id: future.get(timeout=30).partition for event_id, future in futures}
    finally:
        producer.close(timeout=10)


def consume_all(bootstrap: str, topic: str, group: str, expected: int, timeout_s: float = 120.0) -> list:
    """Read until ``expected`` records arrived (plus a short quiet period), commit, close."""
    consumer = KafkaConsumer(
        topic, **kafka_options(get_settings(), bootstrap), group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, max_poll_records=2000,
    )  # fmt: skip
    records = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=1000).values():  # anything beyond expected = duplicates
            records.extend(batch)
        consumer.commit()
    finally:
        consumer.close()
    return records


@pytest.fixture
def broker(settings, tmp_path) -> Iterator[KafkaServer | None]:
    """A broker of the test's own, stopped afterwards; None when KAFKA_BOOTSTRAP_SERVERS names an
    external broker (only round-tripped, never restarted)."""
    if settings.kafka_is_external:
        yield None
        return
    port, controller_port = free_ports(2)
    own = KafkaServer(
        settings.model_copy(update={"data_dir": tmp_path, "kafka_port": port, "kafka_controller_port": controller_port})
    )
    assert own.start() is True
    yield own
    own.stop()


def test_roundtrip_and_restart(settings, broker, fresh_topic):
    bootstrap = broker.s.bootstrap_servers if broker else settings.bootstrap_servers
    topic = fresh_topic(PARTITIONS, bootstrap)
    events = make_events(N_EVENTS)
    by_id = {e.event_id: e for e in events}

    acked = produce(bootstrap, topic, events)
    assert len(acked) == N_EVENTS
    partitions_of_item = defaultdict(set)
    for e in events:
        partitions_of_item[e.item_id].add(acked[e.event_id])
    assert all(len(parts) == 1 for parts in partitions_of_item.values()), "an item's events span partitions"
    assert set(acked.values()) == set(range(PARTITIONS)), "keys did not spread over the partitions"

    group = f"test-group-{uuid.uuid4().hex[:8]}"
    records = consume_all(bootstrap, topic, group, N_EVENTS)
    assert len(records) == N_EVENTS
    decoded = [decode(r.value) for r in records]
    assert {e.event_id for e in decoded} == set(by_id)
    assert all(e == by_id[e.event_id] for e in decoded)  # every field survived the wire
    assert all(r.key.decode() == by_id[e.event_id].item_id for r, e in zip(records, decoded, strict=True))
    assert all(r.partition == acked[e.event_id] for r, e in zip(records, decoded, strict=True))
    last_seen: dict[str, datetime] = {}
    for e in decoded:  # per item, events come back in the order they were produced
        assert e.event_time >= last_seen.get(e.item_id, datetime.min.replace(tzinfo=UTC))
        last_seen[e.item_id] = e.event_time

    if broker is None:
        pytest.skip("KAFKA_BOOTSTRAP_SERVERS names an external broker: not ours to restart")
    assert broker.stop() is True
    assert broker.status().state == "stopped"
    assert broker.start() is True
    assert broker.status().state == "running"

    again = consume_all(bootstrap, topic, f"test-group-{uuid.uuid4().hex[:8]}", N_EVENTS)
    assert len(again) == N_EVENTS
    assert {decode(r.value).event_id for r in again} == set(by_id)

    # The first group's committed offsets survived: it resumes at the end and gets nothing.
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    resumed = KafkaConsumer(
        **kafka_options(get_settings(), bootstrap),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        end = resumed.end_offsets(tps)
        assert sum(end.values()) == N_EVENTS
        committed = {tp: resumed.committed(tp) for tp in tps}
        assert committed == end
        resumed.subscribe([topic])
        leftovers = []
        deadline = time.monotonic() + 30
        while not resumed.assignment() and time.monotonic() < deadline:
            leftovers += [r for batch in resumed.poll(timeout_ms=500).values() for r in batch]
        assert resumed.assignment() == set(tps)
        quiet_until = time.monotonic() + 3
        while time.monotonic() < quiet_until:
            leftovers += [r for batch in resumed.poll(timeout_ms=500).values() for r in batch]
        assert leftovers == []
        assert {tp: resumed.position(tp) for tp in tps} == end
    finally:
        resumed.close()
