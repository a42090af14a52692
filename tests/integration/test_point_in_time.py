"""Point-in-time reads through Feast's DuckDB offline store over the backfilled Parquet."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pandas as pd
import pytest

from rental.settings import Settings
from streaming.backfill import run_backfill
from streaming.feature_store.store import apply, feature_store
from streaming.simulator.history import simulate
from streaming.simulator.world import SimulationConfig

pytestmark = pytest.mark.integration

POPULARITY = ["item_popularity:bookings_7d", "item_popularity:bookings_30d", "item_popularity:last_booking_at"]


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory, settings):
    """A small history backfilled into its own data dir, with the repo applied there."""
    data_dir = tmp_path_factory.mktemp("pit")
    local = Settings(data_dir=data_dir, REDIS_URL=settings.redis_url)
    history = simulate(SimulationConfig(seed=11, items=150, bookings=6_000, end=date(2026, 6, 1)))
    run_backfill(history, local, as_of=pd.Timestamp("2026-06-01", tz="UTC"))
    apply(local)
    return history, feature_store(local)


def _two_bookings_apart(bookings: pd.DataFrame) -> tuple[str, pd.Timestamp, pd.Timestamp]:
    """An item with two consecutive bookings at least an hour apart, the second far from the first's expiries."""
    for item_id, group in bookings.sort_values("event_time").groupby("item_id"):
        times = group["event_time"].tolist()
        for earlier, later in itertools.pairwise(times):
            if later - earlier > pd.Timedelta(hours=1) and later - earlier < pd.Timedelta(days=6):
                return item_id, earlier, later
    raise AssertionError("no suitable item in the history")


def test_a_time_between_two_bookings_sees_the_earlier_one_only(backfilled):
    history, store = backfilled
    item_id, earlier, later = _two_bookings_apart(history.bookings)
    between = (earlier + (later - earlier) / 2).floor("us")
    entity = pd.DataFrame(
        {"item_id": [item_id] * 3, "event_timestamp": [earlier - timedelta(microseconds=1), between, later]}
    )
    got = store.get_historical_features(entity_df=entity, features=POPULARITY).to_df().sort_values("event_timestamp")
    times = history.bookings.loc[history.bookings["item_id"] == item_id, "event_time"]

    def booked_7d(t):  # the definition: bookings in (t - 7 days, t]
        return int(((times > t - timedelta(days=7)) & (times <= t)).sum())

    before, mid, at_later = got.fillna({"bookings_7d": 0}).to_dict("records")  # no row yet: none booked
    assert mid["bookings_7d"] == booked_7d(between) == booked_7d(earlier)  # the earlier booking counts...
    assert before["bookings_7d"] == booked_7d(earlier - timedelta(microseconds=1)) == mid["bookings_7d"] - 1
    assert at_later["bookings_7d"] == booked_7d(later) == mid["bookings_7d"] + 1  # ...the later one from its time on
    assert pd.Timestamp(mid["last_booking_at"]).floor("s") == earlier.floor("s")


def test_past_the_ttl_the_row_is_kept_with_nulls(backfilled):
    history, store = backfilled
    item_id = history.bookings["item_id"].iloc[0]
    last = history.bookings.loc[history.bookings["item_id"] == item_id, "event_time"].max()
    far_future = last + timedelta(days=365 + 30 + 5)  # past the last expiry row plus the 365-day ttl
    entity = pd.DataFrame({"item_id": [item_id, item_id], "event_timestamp": [last, far_future]})
    got = store.get_historical_features(entity_df=entity, features=POPULARITY).to_df().sort_values("event_timestamp")
    assert len(got) == 2  # the entity row past the ttl is not dropped
    assert got["bookings_30d"].iloc[0] >= 1
    assert pd.isna(got["bookings_30d"].iloc[1])
