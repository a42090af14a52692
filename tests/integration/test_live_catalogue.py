"""The live catalogue against the real broker, Redis and Feast, with the three stages running.

A booking of an item not yet listed is a dead letter; the item is then listed on the items
topic and booked again at once: that booking counts without a restart, the pricing service's
item attributes view has the item, and `rental dlq replay` brings the first booking back (once:
a second run replays nothing again). Afterwards the online features equal the backfill of all
the events, with the new item in its catalogue.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from rental.servers.topics import admin_client, ensure_topics
from streaming.backfill import timeline
from streaming.catalogue.listing import Listing
from streaming.catalogue.live import export
from streaming.catalogue.publish import publish
from streaming.events import BookingCreated, created_event_id, to_us
from streaming.feature_store.offline import read_view
from streaming.feature_store.store import feature_store
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.producer import make_producer, send_events
from streaming.simulator.history import simulate
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig
from tests.integration.test_stream_features import _expected_store, _online
from tests.integration.test_stream_fuzz import _group_done, _read_to_end
from tests.worlds.stream_world import kill, make_world, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

END = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
REDIS_DB, EXPECTED_DB = 10, 12
NEW, NEVER = "item_listed_live", "item_never_listed"
MINIMAL = "item_minimal_live"  # id, brand and category only, in free words
NASTY_CATEGORY = "Cotton-Jersey, Loose, Summer, Seasonal 🌸 / été"


@pytest.fixture(scope="module")
def history():
    return simulate(SimulationConfig(seed=18, items=60, bookings=800, end=END))


def _booking(booking_id: str, item_id: str, customer_id: str, at: datetime, price: float) -> BookingCreated:
    return BookingCreated(event_id=created_event_id(booking_id), item_id=item_id, customer_id=customer_id,
                          booking_id=booking_id, event_time=at, rental_start=at.date() + timedelta(days=3),
                          rental_days=4, price_per_day=price)  # fmt: skip


def _letters(world) -> list[dict]:
    return [
        json.loads(r.value) for r in _read_to_end(world.settings.bootstrap_servers, world.settings.topic_bookings_dlq)
    ]


def _item(store, item_id: str, features: list[str]) -> dict:
    return store.get_online_features(features=features, entity_rows=[{"item_id": item_id}]).to_dict()


def _replay(world) -> str:
    done = subprocess.run([sys.executable, "-m", "rental.cli", "dlq", "replay"], env=world.env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_an_item_listed_while_the_stages_run_counts_and_its_dead_letters_replay(tmp_path, settings, history):
    run = uuid.uuid4().hex[:8]
    world = make_world(tmp_path, settings, history, redis_db=REDIS_DB, RENTAL_STREAM_NOW=NOW.isoformat(),
                       RENTAL_CHECKPOINT_EVERY_S="1", RENTAL_TOPIC_ITEMS=f"test.{run}.items")  # fmt: skip
    s = world.settings
    with admin_client(s) as admin:
        ensure_topics(admin, {s.topic_items: (s.items_partitions, -1)}, compacted={s.topic_items})
    world.extra_topics.append(s.topic_items)
    consumer = None
    try:
        producer = make_producer(s)
        send_events(producer, s.topic_bookings, history_events(history.bookings))
        consumer = world.consumer()
        customer = history.customers["customer_id"].iloc[0]
        first = _booking(f"b-{run}-1", NEW, customer, NOW - timedelta(days=2, hours=3), 41.5)
        never = _booking(f"b-{run}-0", NEVER, customer, NOW - timedelta(days=2, hours=4), 20.0)
        send_events(producer, s.topic_bookings, [never, first])
        wait_for(lambda: {NEW, NEVER} <= {x["reason"].rsplit(" ", 1)[-1].strip("'") for x in _letters(world)}, 120,
                 "both unknown-item bookings in the DLQ")  # fmt: skip

        # Listed, then booked at once: the stages must know the item without a restart.
        model = history.items.iloc[0]
        listing = Listing(item_id=NEW, brand="Maison Test", brand_tier="designer", category=str(model["category"]),
                          colour="green", retail_price=640.0, condition="excellent", listing_date=date(2026, 5, 20),
                          units=2)  # fmt: skip
        minimal = Listing(item_id=MINIMAL, brand="Rosé & Co, London", category=NASTY_CATEGORY)
        assert publish(s, [listing, minimal]) == 2
        second = _booking(f"b-{run}-2", NEW, customer, NOW - timedelta(days=1), 45.0)
        third = _booking(f"b-{run}-3", MINIMAL, customer, NOW - timedelta(days=1, hours=1), 30.0)
        send_events(producer, s.topic_bookings, [second, third])
        live = feature_store(s)
        bookings_30d = ["item_popularity:bookings_30d"]
        wait_for(lambda: _item(live, NEW, bookings_30d)["bookings_30d"] == [1], 60, "the new item's booking counted")

        # The pricing service's view of the item: its attributes, online and offline.
        wait_for(lambda: _item(live, NEW, ["item_attributes:brand"])["brand"] == ["Maison Test"], 60,
                 "the new item's attributes online")  # fmt: skip
        attributes = _item(live, NEW, ["item_attributes:item_category", "item_attributes:retail_price",
                                       "item_attributes:units", "item_attributes:brand"])  # fmt: skip
        assert attributes == {"item_id": [NEW], "item_category": [listing.category], "retail_price": [640.0],
                              "units": [2], "brand": ["Maison Test"]}  # fmt: skip
        offline = read_view(s, "item_attributes")
        assert offline[offline["item_id"] == NEW]["event_timestamp"].tolist() == [pd.Timestamp("2026-05-20", tz="UTC")]
        # Only id, brand and category: unknown retail price and listing date, one unit.
        wait_for(lambda: _item(live, MINIMAL, bookings_30d)["bookings_30d"] == [1], 60, "the minimal item's booking")
        attributes = _item(live, MINIMAL, ["item_attributes:item_category", "item_attributes:retail_price",
                                           "item_attributes:units", "item_attributes:listed_at"])  # fmt: skip
        assert attributes == {"item_id": [MINIMAL], "item_category": [NASTY_CATEGORY], "retail_price": [None],
                              "units": [1], "listed_at": [None]}  # fmt: skip
        offline = read_view(s, "item_attributes")
        assert offline[offline["item_id"] == MINIMAL]["event_timestamp"].tolist() == [
            pd.Timestamp("1970-01-02", tz="UTC")
        ]

        out = _replay(world)
        assert "replayed 1 " in out and "item still not in the catalogue" in out and NEVER in out, out
        wait_for(lambda: _item(live, NEW, bookings_30d)["bookings_30d"] == [2], 60, "the replayed booking counted")
        again = _replay(world)  # the waiting letter is read again; the replayed one is not sent twice
        assert "replayed 0 " in again and "1 replayed by an earlier run" in again, again

        prefix = s.consumer_group_prefix
        wait_for(lambda: all(_group_done(s.bootstrap_servers, f"{prefix}-{stage}", topic) for stage, topic in
                             (("items", s.topic_bookings), ("customers", s.topic_bookings_by_customer),
                              ("categories", s.topic_bookings_by_category))), 60, "every stage drained")  # fmt: skip
        producer.close()
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=60) == 0, world.logs()[-5_000:]
        consumer = None
        reasons = [x["reason"] for x in _letters(world)]
        assert sorted(reasons) == sorted([f"item_id: unknown item {NEW!r}", f"item_id: unknown item {NEVER!r}"])

        # The backfill of every event, the new item in its catalogue, the never-listed one nowhere.
        items, listed = export(s)  # the items table as the live catalogue has it, for the backfill
        assert listed == 2 and len(items) == len(history.items) + 2
        assert items.set_index("item_id").loc[NEW, ["brand", "units"]].tolist() == ["Maison Test", 2]
        added = pd.DataFrame([{"booking_id": b.booking_id, "item_id": b.item_id, "customer_id": b.customer_id,
                               "event_time": pd.Timestamp(b.event_time), "rental_start": b.rental_start,
                               "rental_days": b.rental_days, "price_per_day": b.price_per_day, "cancelled_at": pd.NaT}
                              for b in (first, second, third)])  # fmt: skip
        bookings = pd.concat([history.bookings, added], ignore_index=True)
        pipeline = FeaturePipeline(Catalogue.from_items(items))
        events = timeline(bookings)
        columns = ("kind", "event_id", "item_id", "customer_id", "time_us", "price_pence", "rental_days")
        for args in zip(*(events[c].tolist() for c in columns), strict=True):
            pipeline.process(*args)
        pipeline.advance(to_us(NOW))
        expected = _expected_store(world, pipeline, redis_db=EXPECTED_DB)
        item_ids = items["item_id"].tolist()
        customers = history.customers["customer_id"].tolist()
        categories = sorted(items["category"].unique())
        for view, key, ids in (("item_popularity", "item_id", item_ids), ("customer_history", "customer_id", customers),
                               ("category_season", "category", categories)):  # fmt: skip
            pd.testing.assert_frame_equal(_online(live, view, key, ids), _online(expected, view, key, ids))
    finally:
        if consumer is not None:
            kill(consumer)
        world.remove_topics()
