"""The archive's pure part: events to history rows, duplicates, cancellations, unknown ids, and
files the training set's fast path trusts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest

from streaming.history.archive import (
    CANCELLED_BEFORE_BOOKED,
    IN_THE_FUTURE,
    UNDECODABLE,
    UNKNOWN_BOOKING,
    UNKNOWN_ITEM,
    Appender,
    booking_row,
    write_result,
)
from streaming.history.tables import BOOKINGS, history_paths, load_history, validate, write_history
from streaming.simulator.booking_events import booking_cancelled, booking_created
from streaming.simulator.history import simulate
from streaming.simulator.world import SimulationConfig

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def history():
    return simulate(SimulationConfig(seed=3, items=40, bookings=600, end=date(2026, 11, 1)))


def _created(booking_id: str, item: str, customer: str, at: datetime = NOW, price: float = 12.5):
    return booking_created(booking_id, item, customer, at, at.date() + timedelta(days=2), 4, price, "GBP")


def _appender(history, listed: pd.DataFrame | None = None) -> Appender:
    calls = []

    def catalogue() -> pd.DataFrame:
        calls.append(1)
        return listed if listed is not None else history.items.iloc[:0]

    appender = Appender(history, catalogue, latest_allowed=NOW + timedelta(minutes=5))
    appender.catalogue_calls = calls
    return appender


def test_a_created_event_is_a_bookings_row_of_the_history_schema():
    row = booking_row(_created("b-1", "item-1", "cust-1", price=31.25))
    frame, problems = validate(pd.DataFrame([row]), BOOKINGS, "row")
    assert not problems.found
    got = frame.iloc[0]
    assert (got.booking_id, got.item_id, got.customer_id) == ("b-1", "item-1", "cust-1")
    assert got.event_time == pd.Timestamp(NOW) and got.rental_start == date(2026, 11, 4)
    assert (got.rental_days, got.price_per_day, got.currency) == (4, 31.25, "GBP")
    assert pd.isna(got.cancelled_at) and pd.isna(got.expected_price_per_day)


def test_appended_cancelled_duplicates_and_rejections_are_each_counted(history):
    item, customer = history.items.item_id[0], history.customers.customer_id[0]
    old = history.bookings[history.bookings.cancelled_at.isna()].iloc[-1]
    appender = _appender(history)
    outcomes = [
        appender.add(_created("live-1", item, customer)),
        appender.add(_created("live-2", item, customer)),
        appender.add(_created("live-1", item, customer)),  # redelivered
        appender.add(_created(old.booking_id, item, customer)),  # already in the history
        appender.add(booking_cancelled("live-2", item, customer, NOW + timedelta(seconds=30))),
        appender.add(booking_cancelled("live-2", item, customer, NOW + timedelta(seconds=30))),
        appender.add(booking_cancelled(old.booking_id, old.item_id, old.customer_id, NOW)),
        appender.add(booking_cancelled("never-booked", item, customer, NOW)),
        appender.add(booking_cancelled("live-1", item, customer, NOW - timedelta(hours=1))),
        appender.add(_created("live-3", "no-such-item", customer)),
        appender.add(_created("live-4", item, customer, at=NOW + timedelta(hours=2))),
        appender.add_record(b'{"schema_version": 1, "event_type": "booking_cr'),
        appender.add_record(None),
    ]
    assert outcomes == ["appended", "appended", "duplicate", "duplicate", "cancelled", "duplicate", "cancelled",
                        UNKNOWN_BOOKING, CANCELLED_BEFORE_BOOKED, UNKNOWN_ITEM, IN_THE_FUTURE, UNDECODABLE,
                        UNDECODABLE]  # fmt: skip
    report = appender.report
    assert (report.appended, report.cancelled, report.duplicates) == (2, 2, 3)
    assert sum(report.rejected.values()) == 6 and report.rejected[UNDECODABLE] == 2

    after = appender.result()
    b = after.bookings.set_index("booking_id")
    assert len(after.bookings) == len(history.bookings) + 2
    assert pd.isna(b.loc["live-1", "cancelled_at"])
    assert b.loc["live-2", "cancelled_at"] == pd.Timestamp(NOW + timedelta(seconds=30))
    assert b.loc[old.booking_id, "cancelled_at"] == pd.Timestamp(NOW)
    assert after.bookings.event_time.is_monotonic_increasing
    assert history.bookings.set_index("booking_id").cancelled_at.isna()[old.booking_id]  # the input is not changed


def test_unknown_customers_are_added_and_unknown_items_come_from_the_catalogue(history):
    listed = pd.DataFrame([{"item_id": "new-item", "brand": "Acme", "category": "dresses", "retail_price": 90.0}])
    appender = _appender(history, listed)
    assert appender.add(_created("live-1", "new-item", "new-customer")) == "appended"
    assert appender.add(_created("live-2", "new-item", "new-customer")) == "appended"
    assert appender.add(_created("live-3", "unlisted-item", "new-customer")) == UNKNOWN_ITEM
    assert len(appender.catalogue_calls) == 1  # the catalogue is read once, not per unknown item
    after = appender.result()
    assert (appender.report.items_added, appender.report.customers_added) == (1, 1)
    new_item = after.items.set_index("item_id").loc["new-item"]
    assert (new_item.brand, new_item.category, new_item.retail_price, new_item.units) == ("Acme", "dresses", 90.0, 1)
    customer = after.customers.set_index("customer_id").loc["new-customer"]
    assert pd.isna(customer.segment) and pd.isna(customer.signup_date)


def test_the_rewritten_history_loads_and_keeps_the_writers_types(history, tmp_path):
    from streaming.history.tables import ITEMS
    from training.dataset import _has_schema_types

    write_history(history, tmp_path)
    written = pq.read_schema(tmp_path / "bookings.parquet")
    before = load_history(*history_paths(tmp_path))
    appender = _appender(before, pd.DataFrame([{"item_id": "new-item", "brand": "Acme", "category": "tops"}]))
    appender.add(_created("live-1", "new-item", "new-customer"))
    appender.add(booking_cancelled("live-1", "new-item", "new-customer", NOW + timedelta(seconds=5)))
    after = appender.result()
    write_result(before, after, tmp_path)

    items, _, bookings = history_paths(tmp_path)
    assert _has_schema_types(items, ITEMS) and _has_schema_types(bookings, BOOKINGS)
    assert pq.read_schema(bookings).remove_metadata() == written.remove_metadata()  # the writer's own format
    reread = load_history(*history_paths(tmp_path))  # every check of the history passes
    assert len(reread.bookings) == len(before.bookings) + 1 and "new-customer" in set(reread.customers.customer_id)
    assert reread.bookings.set_index("booking_id").loc["live-1", "cancelled_at"] == pd.Timestamp(
        NOW + timedelta(seconds=5)
    )
    assert not list(tmp_path.glob(".*archive-*"))  # no temporary file left behind
