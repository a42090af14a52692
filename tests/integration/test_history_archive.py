"""`rental history archive` against the real broker: live bookings from the simulator on a
bookings topic of the test's own become training rows once, and a process killed between the
history's write and the offsets' commit neither loses nor doubles a row."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from rental.settings import Settings
from streaming.events import BookingCreated, encode
from streaming.history.archive import UNDECODABLE, UNKNOWN_ITEM, archive
from streaming.history.tables import history_paths, load_history
from streaming.producer import make_producer
from streaming.simulator.booking_events import booking_cancelled, booking_created
from streaming.simulator.live import LiveSimulator
from streaming.simulator.world import SimulationConfig, World
from tests.model.conftest import END, make_world

pytestmark = pytest.mark.integration
CONFIG = {"seed": 11, "items": 120, "bookings": 3_000}


@pytest.fixture(scope="module")
def base_world(tmp_path_factory, settings) -> Settings:
    """A simulated history, backfilled into an offline store, with its Feast registry."""
    return make_world(tmp_path_factory.mktemp("archive-world"), settings, **CONFIG)


@pytest.fixture
def world(base_world, tmp_path, fresh_topic) -> Settings:
    """The base world's history copied (each test appends to its own), its own topics and group."""
    history = tmp_path / "history"
    shutil.copytree(base_world.history_dir, history)
    return base_world.model_copy(update={
        "history_dir_env": history, "topic_bookings": fresh_topic(3), "topic_items": fresh_topic(1),
        "history_archive_group_id": f"test-archive-{uuid.uuid4().hex[:8]}"})  # fmt: skip


def _live_events(settings: Settings, n: int) -> list:
    """``n`` live bookings as the simulator makes them now, and the cancellations among them."""
    history = load_history(*history_paths(settings.history_dir))
    config = SimulationConfig(**CONFIG, end=END)
    simulator = LiveSimulator(World(config), history.bookings, seed=3, cancel_delay_s=(1.0, 2.0))
    now = datetime.now(UTC)
    return simulator.batch(now, n) + simulator.batch(now + timedelta(seconds=3), 0)


def _send(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    producer = make_producer(settings)
    for key, value in records:
        producer.send(settings.topic_bookings, key=key, value=value)
    producer.flush()
    producer.close()


def _list_item(settings: Settings, item_id: str, category: str) -> None:
    from streaming.catalogue.listing import Listing
    from streaming.catalogue.publish import publish

    publish(settings, [Listing(item_id=item_id, brand="Newbrand", category=category, retail_price=120.0)])


def test_live_bookings_become_training_rows_once(world):
    from training.dataset import build_training_set

    before = load_history(*history_paths(world.history_dir))
    live = _live_events(world, 40)
    created = [e for e in live if isinstance(e, BookingCreated)]
    cancels = {e.booking_id for e in live if e.event_type == "booking_cancelled"}
    first, now = next(e for e in created if e.booking_id not in cancels), datetime.now(UTC)
    category = before.items.category.iloc[0]
    _list_item(world, "listed-live", category)
    listed = booking_created("live-listed", "listed-live", "customer-new", now, now.date(), 3, 42.0, "GBP")
    unknown = booking_created("live-unknown", "never-listed", "customer-new", now, now.date(), 3, 42.0, "GBP")
    cancel = booking_cancelled(first.booking_id, first.item_id, first.customer_id, now + timedelta(seconds=1))
    events = [*live, listed, unknown, cancel, first]  # ``first`` again: a redelivery
    _send(world, [(e.item_id, encode(e)) for e in events] + [("x", b'{"schema_version": 1, "event_ty')])

    report = archive(world)

    assert report.read == len(events) + 1
    assert report.appended == len(created) + 1  # the live bookings and the listed item's
    assert (report.duplicates, report.cancelled) == (1, len(cancels) + 1)
    assert dict(report.rejected) == {UNDECODABLE: 1, UNKNOWN_ITEM: 1}
    assert (report.items_added, report.customers_added) == (1, 1)

    after = load_history(*history_paths(world.history_dir))
    b = after.bookings.set_index("booking_id")
    new_ids = [e.booking_id for e in created] + ["live-listed"]
    assert len(after.bookings) == len(before.bookings) + len(new_ids) and b.index.is_unique
    assert b.loc[first.booking_id, "cancelled_at"] == pd.Timestamp(cancel.event_time)
    assert b.loc[list(cancels), "cancelled_at"].notna().all()
    assert b.loc[[e.booking_id for e in created if e.booking_id not in cancels | {first.booking_id}],
                 "cancelled_at"].isna().all()  # fmt: skip
    assert b.loc[new_ids, "price_per_day"].tolist() == [e.price_per_day for e in created] + [42.0]
    assert report.span[1] == max(e.event_time for e in [*created, listed])

    data = build_training_set(world)
    rows = data.frame.set_index("booking_id").loc[new_ids]
    assert len(data.frame) == len(after.bookings)
    assert rows.loc["live-listed", "category"] == category  # the item as the live catalogue listed it
    known = rows.drop(index="live-listed")
    brands = before.items.set_index("item_id").brand
    assert known["brand"].astype(str).tolist() == brands.loc[known["item_id"].astype(str)].tolist()
    assert known["price_per_day"].tolist() == [e.price_per_day for e in created]

    again = archive(world)
    assert (again.read, again.appended, again.cancelled) == (0, 0, 0)
    assert len(load_history(*history_paths(world.history_dir)).bookings) == len(after.bookings)


KILLED_AT_THE_COMMIT = textwrap.dedent("""
    import os, pickle, signal, sys
    from streaming.history.archive import archive
    settings = pickle.loads(open(sys.argv[1], "rb").read())
    archive(settings, before_commit=lambda report: os.kill(os.getpid(), signal.SIGKILL))
""")


def test_a_kill_between_the_write_and_the_commit_neither_loses_nor_doubles(world, tmp_path):
    from kafka import KafkaConsumer, TopicPartition

    from rental.connections import kafka_options

    before = load_history(*history_paths(world.history_dir))
    live = _live_events(world, 60)
    created = [e for e in live if isinstance(e, BookingCreated)]
    _send(world, [(e.item_id, encode(e)) for e in live])
    pickled = tmp_path / "settings.pickle"
    pickled.write_bytes(pickle.dumps(world))

    killed = subprocess.run([sys.executable, "-c", KILLED_AT_THE_COMMIT, str(pickled)], cwd=os.getcwd(),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    written = load_history(*history_paths(world.history_dir))
    assert len(written.bookings) == len(before.bookings) + len(created)  # written, then killed
    consumer = KafkaConsumer(**kafka_options(world), group_id=world.history_archive_group_id)
    try:
        assert all(consumer.committed(TopicPartition(world.topic_bookings, p)) is None for p in range(3))
    finally:
        consumer.close()

    report = archive(world)  # the same records again, from the uncommitted offsets

    assert report.read == len(live) and report.appended == 0 and report.duplicates == len(live)
    after = load_history(*history_paths(world.history_dir))
    assert after.bookings.booking_id.is_unique
    pd.testing.assert_frame_equal(after.bookings, written.bookings)
    assert sum(report.committed.values()) == len(live)
    assert archive(world).read == 0
