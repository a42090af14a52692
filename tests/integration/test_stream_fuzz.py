"""Whatever a producer writes to ``bookings``, no stage stops and no good event is lost.

Seeded random and mutated payloads (deep nesting, ~900 KB of text, invalid UTF-8, numbers out
of range, null values, null, empty and huge keys) go between a small history's good events,
through kafka-python's plain producer so nothing is validated on the way. The consumer must
drain every topic with all three stages running; every bad record is a bounded dead letter
naming its offset and reason; the online features equal the backfill of the good events alone.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import UTC, date, datetime

import orjson
import pandas as pd
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from rental.connections import kafka_options
from rental.settings import get_settings
from streaming.backfill import timeline
from streaming.events import EventError, decode, encode, to_us
from streaming.feature_store.store import feature_store
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.simulator.history import simulate
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig
from tests.integration.test_stream_features import _expected_store, _online
from tests.worlds.stream_world import make_world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

END = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
BAD = 300
MAX_LETTER = 20_000  # a low bound, so that letters are truncated well within the broker's limits


def _rejected(payload: bytes | None) -> bool:
    """Pydantic's verdict (the consumer's fast paths are held to it by the unit tests)."""
    try:
        decode(payload or b"")
    except EventError:
        return True
    return False


def _bad_payloads(rng: random.Random, goods: list[bytes]) -> list[bytes | None]:
    fixed = [b"[" * 100_000, b'{"a":' * 100_000, "é".encode() * 450_000, b"\xff\xfe" * 1_000, None, b"",
             b'{"schema_version": ' + b"9" * 5_000 + b"}", b"\x00" * 300]  # fmt: skip
    out: list[bytes | None] = list(fixed)
    odd = [None, 10**40, -(10**40), 1e308, "x" * 5_000, [[[[]]]], {"a": {}}, True, "", "\ud800", 0, -1]
    while len(out) < BAD:
        good = rng.choice(goods)
        kind = rng.randrange(4)
        if kind == 0:  # random bytes
            candidate = rng.randbytes(rng.choice([1, 10, 100, 1_000, 20_000]))
        elif kind == 1:  # a good payload with bytes changed, dropped or cut
            candidate = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(candidate))
                op = rng.randrange(3)
                if op == 0:
                    candidate[at] = rng.randrange(256)
                elif op == 1:
                    del candidate[at]
                else:
                    candidate = candidate[:at]
                    break
            candidate = bytes(candidate)
        elif kind == 2:  # a field given an odd value, or taken away
            raw = json.loads(good)
            field = rng.choice(sorted(raw))
            if rng.random() < 0.2:
                del raw[field]
            else:
                raw[field] = rng.choice(odd)
            candidate = json.dumps(raw).encode("utf-8", "surrogatepass")
        else:  # JSON-shaped noise
            candidate = orjson.dumps(rng.choice([[1] * rng.randrange(50), "s" * rng.randrange(500), 1.5, {"x": 1}]))
        if _rejected(candidate):
            out.append(candidate)
    rng.shuffle(out)
    return out


def _key(rng: random.Random, item: str) -> bytes | None:
    return rng.choice([None, b"", item.encode(), rng.randbytes(40), b"k" * 50_000])


@pytest.fixture(scope="module")
def history():
    return simulate(SimulationConfig(seed=7, items=80, bookings=1_500, end=END))


def _group_done(bootstrap_servers: str, group: str, topic: str) -> bool:
    """Every partition of ``topic`` committed to its end by ``group`` (read without joining it)."""
    consumer = KafkaConsumer(**kafka_options(get_settings(), bootstrap_servers), group_id=group,
                             enable_auto_commit=False)  # fmt: skip
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(parts)
        return bool(parts) and all(consumer.committed(tp) == ends[tp] for tp in parts)
    finally:
        consumer.close()


def _read_to_end(bootstrap_servers: str, topic: str, timeout_s: float = 60.0) -> list:
    """Every record of ``topic`` up to its end offsets now (not until a quiet spell: a slow
    first fetch on a loaded machine must not look like an empty topic)."""
    consumer = KafkaConsumer(**kafka_options(get_settings(), bootstrap_servers), enable_auto_commit=False,
                             fetch_max_bytes=50_000_000)  # fmt: skip
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends, out, deadline = consumer.end_offsets(parts), [], time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1_000).values():
                out += batch
        return out
    finally:
        consumer.close()


def test_random_and_mutated_payloads_stop_no_stage_and_lose_no_good_event(tmp_path, settings, history):
    world = make_world(tmp_path, settings, history, redis_db=8, RENTAL_STREAM_NOW=NOW.isoformat(),
                       RENTAL_DLQ_MAX_LETTER_BYTES=str(MAX_LETTER), RENTAL_CHECKPOINT_EVERY_S="1")  # fmt: skip
    try:
        _run(world, history)
    finally:
        world.remove_topics()


def _run(world, history) -> None:
    s, rng = world.settings, random.Random(18)
    good_events = list(history_events(history.bookings))
    goods = [encode(event) for event in good_events]
    bad = _bad_payloads(rng, goods)
    slots = sorted(rng.sample(range(len(goods) + len(bad)), len(bad)))
    producer = KafkaProducer(**kafka_options(s), acks="all", max_request_size=2_000_000)
    bad_sent, good_iter, bad_iter = [], iter(zip(good_events, goods, strict=True)), iter(bad)
    for at in range(len(goods) + len(bad)):
        if slots and slots[0] == at:
            slots.pop(0)
            payload = next(bad_iter)
            item = rng.choice(history.items["item_id"].tolist())
            bad_sent.append((producer.send(s.topic_bookings, key=_key(rng, item), value=payload), payload))
        else:
            event, payload = next(good_iter)
            producer.send(s.topic_bookings, key=event.item_id.encode(), value=payload)
    producer.flush()
    where = {}
    for future, payload in bad_sent:
        meta = future.get(timeout=30)
        where[(meta.partition, meta.offset)] = payload or b""
    producer.close()
    assert len(where) == BAD

    consumer = world.consumer("--until-idle", "3")
    assert consumer.wait(timeout=180) == 0, world.logs()[-5_000:]  # every stage ran until all was drained

    prefix = s.consumer_group_prefix
    for stage, topic in (("items", s.topic_bookings), ("customers", s.topic_bookings_by_customer),
                         ("categories", s.topic_bookings_by_category)):  # fmt: skip
        assert _group_done(s.bootstrap_servers, f"{prefix}-{stage}", topic), f"{stage} is short of {topic}'s end"

    records = _read_to_end(s.bootstrap_servers, s.topic_bookings_dlq)
    letters = {}
    for record in records:
        assert len(record.value) <= MAX_LETTER
        letter = json.loads(record.value)
        letters[(letter["source"]["partition"], letter["source"]["offset"])] = letter
    assert len(records) == len(letters) == BAD and set(letters) == set(where)
    truncated = 0
    for at, letter in letters.items():
        original = where[at]
        assert letter["reason"] and letter["source"]["topic"] == s.topic_bookings
        if letter.get("payload_truncated"):
            truncated += 1
            assert letter["payload_length"] == len(original)
            assert letter["payload_sha256"] == hashlib.sha256(original).hexdigest()
        else:
            kept = letter["payload"].encode() if letter["payload_encoding"] == "utf-8" else None
            assert kept is None or kept == original
    assert truncated >= 3  # the deep nestings and the 900 KB of text at least

    pipeline = FeaturePipeline(Catalogue.from_items(history.items))
    events = timeline(history.bookings)
    columns = ("kind", "event_id", "item_id", "customer_id", "time_us", "price_pence", "rental_days")
    for args in zip(*(events[c].tolist() for c in columns), strict=True):
        pipeline.process(*args)
    pipeline.advance(to_us(NOW))
    live, expected = feature_store(s), _expected_store(world, pipeline, redis_db=9)
    items = history.items["item_id"].tolist()
    customers = history.customers["customer_id"].tolist()
    categories = sorted(history.items["category"].unique())
    for view, key, ids in (("item_popularity", "item_id", items), ("customer_history", "customer_id", customers),
                           ("category_season", "category", categories)):  # fmt: skip
        pd.testing.assert_frame_equal(_online(live, view, key, ids), _online(expected, view, key, ids))
    assert _online(live, "item_popularity", "item_id", items)["bookings_30d"].fillna(0).sum() > 0
