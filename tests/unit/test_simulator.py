"""The simulator: reproducible, seasonal, and priced by its documented ground truth."""

import hashlib
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from streaming.events import CANCELLED, CREATED, BookingCancelled, BookingCreated, encode
from streaming.history.tables import write_history
from streaming.simulator import replay
from streaming.simulator.history import recent_counts, simulate
from streaming.simulator.live import LiveSimulator
from streaming.simulator.price_process import NOISE_SIGMA, expected_price
from streaming.simulator.replay import history_events
from streaming.simulator.shifts import Shifts
from streaming.simulator.world import World

from .conftest import SMALL


def _digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.parquet"))}


def test_same_seed_writes_identical_parquet(tmp_path):
    write_history(simulate(SMALL), tmp_path / "a")
    write_history(simulate(SMALL), tmp_path / "b")
    write_history(simulate(SMALL.model_copy(update={"seed": 8})), tmp_path / "c")
    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert set(a) == {"items.parquet", "customers.parquet", "bookings.parquet"}
    assert a == b
    assert a["bookings.parquet"] != c["bookings.parquet"]


def test_history_has_the_size_and_span_asked_for(small_history):
    b = small_history.bookings
    assert 0.85 * SMALL.bookings < len(b) < 1.15 * SMALL.bookings
    assert b["event_time"].min() >= SMALL.start
    assert b["event_time"].max() < pd.Timestamp(SMALL.end, tz="UTC")
    assert b["booking_id"].is_unique
    assert set(b["item_id"]) <= set(small_history.items["item_id"])
    assert set(b["customer_id"]) <= set(small_history.customers["customer_id"])
    assert (pd.to_datetime(b["rental_start"]).dt.date >= b["event_time"].dt.date).all()


def test_dresses_and_gowns_book_far_more_in_june_than_february(small_history):
    b = small_history.bookings.merge(small_history.items[["item_id", "category"]], on="item_id")
    month = pd.to_datetime(b["rental_start"]).dt.month
    wedding = b["category"].isin(["dress", "gown"])
    june, february = (wedding & (month == 6)).sum(), (wedding & (month == 2)).sum()
    assert june > 2 * february
    coats = b["category"] == "outerwear"
    assert (coats & (month == 1)).sum() > 2 * (coats & (month == 7)).sum()


def test_weekly_pattern_favours_weekend_starts(small_history):
    weekday = pd.to_datetime(small_history.bookings["rental_start"]).dt.dayofweek.value_counts()
    assert weekday[4] > 1.4 * weekday[1]  # Fridays over Tuesdays


def test_popularity_is_skewed_a_few_hot_items_and_a_long_tail(small_history):
    per_item = small_history.bookings["item_id"].value_counts()
    top = per_item.head(len(small_history.items) // 20).sum()  # top 5 % of items
    assert top > 0.3 * per_item.sum()


def _one_booking(**overrides):
    row = dict(
        retail_price=400.0, brand_tier="premium", category="gown", condition="excellent",
        listing_date=date(2025, 1, 1), event_time=pd.Timestamp("2026-03-01T10:00", tz="UTC"),
        rental_start=date(2026, 3, 20), rental_days=3, segment="regular", recent_bookings_30d=2,
    )  # fmt: skip
    row.update(overrides)
    return pd.DataFrame([row])


def test_true_price_rises_with_retail_price_and_popularity():
    retail = [expected_price(_one_booking(retail_price=r))[0] for r in (100, 400, 1600)]
    popular = [expected_price(_one_booking(recent_bookings_30d=n))[0] for n in (0, 3, 20)]
    assert retail == sorted(retail) and retail[0] < retail[-1]
    assert popular == sorted(popular) and popular[0] < popular[-1]


def test_same_gown_costs_more_in_wedding_season_than_february():
    june = expected_price(_one_booking(event_time=pd.Timestamp("2026-06-01", tz="UTC"), rental_start=date(2026, 6, 16)))
    february = expected_price(
        _one_booking(event_time=pd.Timestamp("2026-02-01", tz="UTC"), rental_start=date(2026, 2, 17))
    )
    assert june[0] > 1.1 * february[0]


def test_paid_price_is_the_expected_price_with_noise_of_the_documented_size(small_history):
    b = small_history.bookings
    log_ratio = np.log(b["price_per_day"] / b["expected_price_per_day"])
    assert abs(log_ratio.std() - NOISE_SIGMA) < 0.01
    assert abs((b["price_per_day"] / b["expected_price_per_day"]).mean() - 1) < 0.01


def test_recorded_popularity_matches_a_brute_force_count(small_history):
    b = small_history.bookings
    rng = np.random.default_rng(0)
    for i in rng.choice(len(b), size=200, replace=False):
        row = b.iloc[i]
        same = b[(b["item_id"] == row.item_id)]
        window = same[(same.event_time > row.event_time - pd.Timedelta(days=30)) & (same.event_time < row.event_time)]
        assert row.recent_bookings_30d == len(window)


def test_recent_counts_window_edges():
    day = 86_400 * 10**9
    items = np.array([0, 0, 0, 0, 1, 1])
    times = np.array([0, 10 * day, 30 * day, 30 * day, 5 * day, 6 * day])
    # (t - 30d, t): the event exactly 30 days earlier is out; ties at t are not "before".
    assert recent_counts(items, times, 30 * day).tolist() == [0, 1, 1, 1, 0, 1]


def test_cancellations_fall_between_booking_and_rental_start(small_history):
    b = small_history.bookings
    c = b[b["cancelled_at"].notna()]
    assert 0.03 < len(c) / len(b) < 0.12
    assert (c["cancelled_at"] >= c["event_time"]).all()
    assert (c["cancelled_at"] <= pd.to_datetime(c["rental_start"]).dt.tz_localize("UTC") + pd.Timedelta(days=1)).all()


def test_replayed_history_is_every_booking_and_cancellation_in_time_order(small_history):
    events = list(history_events(small_history.bookings))
    created = [e for e in events if isinstance(e, BookingCreated)]
    cancelled = [e for e in events if isinstance(e, BookingCancelled)]
    assert len(created) == len(small_history.bookings)
    assert len(cancelled) == small_history.bookings["cancelled_at"].notna().sum()
    times = [e.event_time for e in events]
    assert times == sorted(times)
    assert len({e.event_id for e in events}) == len(events)


def test_replay_orders_by_time_then_creation_then_table_across_chunks(small_history, monkeypatch):
    monkeypatch.setattr(replay, "REPLAY_CHUNK", 997)
    bookings = small_history.bookings.sample(frac=1, random_state=2)  # table order differs from time order
    bookings = bookings.assign(
        event_time=bookings["event_time"].dt.floor("D"), cancelled_at=bookings["cancelled_at"].dt.floor("D")
    )
    position = {b: i for i, b in enumerate(bookings["booking_id"])}
    expected = sorted(
        [(t, 0, position[b]) for b, t in zip(bookings["booking_id"], bookings["event_time"], strict=True)]
        + [
            (t, 1, position[b])
            for b, t in zip(bookings["booking_id"], bookings["cancelled_at"], strict=True)
            if pd.notna(t)
        ]
    )
    events = list(history_events(bookings))
    assert len(events) > 997
    assert [(e.event_time, int(e.event_type == CANCELLED), position[e.booking_id]) for e in events] == expected


def test_replayed_events_carry_the_booking_row(small_history):
    bookings = small_history.bookings.set_index("booking_id")
    for event in history_events(small_history.bookings.head(2_000)):
        row = bookings.loc[event.booking_id]
        assert (event.item_id, event.customer_id) == (row.item_id, row.customer_id)
        if event.event_type == CREATED:
            assert event.event_id == f"{event.booking_id}:created"
            assert event.event_time == row.event_time and event.rental_start == row.rental_start
            assert (event.rental_days, event.price_per_day, event.currency) == (
                row.rental_days,
                row.price_per_day,
                row.currency,
            )
        else:
            assert event.event_id == f"{event.booking_id}:cancelled" and event.event_time == row.cancelled_at


def test_a_history_without_cancellations_replays_its_bookings(small_history):
    bookings = small_history.bookings.drop(columns="cancelled_at").sample(frac=1, random_state=3)
    events = list(history_events(bookings))
    assert all(e.event_type == CREATED for e in events)
    assert [e.booking_id for e in events] == list(bookings.sort_values("event_time", kind="stable")["booking_id"])


def test_live_events_are_the_events_their_bookings_replay_as(small_history):
    live = LiveSimulator(World(SMALL), small_history.bookings, seed=5, cancel_delay_s=(1, 30))
    now = datetime(2026, 11, 1, 12, tzinfo=UTC)
    sent = [e for k in range(40) for e in live.batch(now + timedelta(seconds=k), 50 if k < 10 else 0)]
    cancelled_at = {e.booking_id: e.event_time for e in sent if e.event_type == CANCELLED}
    assert 0 < len(cancelled_at) < len(sent)
    table = pd.DataFrame(
        [e.model_dump(exclude={"schema_version", "event_id", "event_type"}) for e in sent if e.event_type == CREATED]
    )
    table["event_time"] = pd.to_datetime(table["event_time"], utc=True)
    table["cancelled_at"] = pd.to_datetime(table["booking_id"].map(cancelled_at), utc=True)
    # Live sends a tick's due cancellations together, so the two orders differ; the events do not.
    assert sorted(encode(e) for e in history_events(table)) == sorted(encode(e) for e in sent)


def test_inflation_shift_raises_prices_after_its_start():
    start = datetime(2026, 5, 1, tzinfo=UTC)
    shifted = simulate(SMALL.model_copy(update={"shifts": Shifts(start=start, inflation_annual=0.5)}))
    base = simulate(SMALL)
    after = lambda h: h.bookings[h.bookings["event_time"] >= pd.Timestamp(start) + pd.Timedelta(days=60)]  # noqa: E731
    ratio = after(shifted)["price_per_day"].median() / after(base)["price_per_day"].median()
    assert ratio > 1.05
    before = lambda h: h.bookings[h.bookings["event_time"] < pd.Timestamp(start)]  # noqa: E731
    pd.testing.assert_series_equal(before(shifted)["price_per_day"], before(base)["price_per_day"])


def test_off_season_shift_moves_a_category_season():
    start = datetime(2025, 11, 1, tzinfo=UTC)
    shifted = simulate(SMALL.model_copy(update={"shifts": Shifts(start=start, off_season_category="outerwear")}))
    b = shifted.bookings.merge(shifted.items[["item_id", "category"]], on="item_id")
    month = pd.to_datetime(b["rental_start"]).dt.month
    coats = b["category"] == "outerwear"
    assert (coats & (month == 7)).sum() > 2 * (coats & (month == 1)).sum()


def test_shift_needs_a_start_and_a_known_category():
    with pytest.raises(ValueError, match="start: a shift needs a start time"):
        Shifts(inflation_annual=0.1)
    with pytest.raises(ValueError, match="unknown category 'hats'"):
        Shifts(start=datetime(2026, 1, 1, tzinfo=UTC), trend_category="hats")


def test_live_events_continue_the_history_and_cancel_later(small_history):
    live = LiveSimulator(World(SMALL), small_history.bookings, seed=3, cancel_delay_s=(1, 2))
    now = datetime(2026, 11, 1, 12, tzinfo=UTC)
    first = live.batch(now, 500)
    assert len(first) == 500 and all(isinstance(e, BookingCreated) for e in first)
    assert {e.event_time for e in first} == {now}
    assert set(e.item_id for e in first) <= set(small_history.items["item_id"])
    later = live.batch(now + timedelta(seconds=5), 0)
    assert later and all(isinstance(e, BookingCancelled) for e in later)
    assert {e.booking_id for e in later} <= {e.booking_id for e in first}
