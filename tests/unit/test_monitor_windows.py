"""Event-time windows and the frames the checks read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.checks.frames import category_of, model_columns, outcome_columns
from monitoring.checks.windows import closed_until, window_of, windows_between

HOUR = timedelta(hours=1)


def test_windows_are_aligned_to_the_epoch_whatever_the_first_time():
    a = window_of(datetime(2026, 3, 1, 10, 17, tzinfo=UTC), timedelta(days=1))
    b = window_of(datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), timedelta(days=1))
    assert a == b and a.start == datetime(2026, 3, 1, tzinfo=UTC) and a.end == datetime(2026, 3, 2, tzinfo=UTC)


def test_windows_between_stop_at_the_last_closed_one():
    windows = windows_between(datetime(2026, 3, 1, 0, 30, tzinfo=UTC), datetime(2026, 3, 1, 3, 59, tzinfo=UTC), HOUR)
    assert [w.start.hour for w in windows] == [0, 1, 2]  # the 03:00 window is still open


def test_a_window_is_closed_once_its_outcomes_are_final():
    assert closed_until(None, HOUR) is None
    newest = datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    assert closed_until(pd.Timestamp(newest), timedelta(minutes=15)) == newest - timedelta(minutes=15)


def _quotes() -> pd.DataFrame:
    quoted = pd.to_datetime(["2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z"])
    return pd.DataFrame({
        "quoted_at": quoted, "rental_start": [pd.Timestamp("2026-03-05").date(), pd.Timestamp("2026-03-01").date()],
        "rental_days": [3, 4], "price_per_day": [20.0, 30.0], "category": [None, "coats"],
        "f_item_category": ["dress", "bag"], "f_listed_at": ["2026-02-27T10:00:00+00:00", None],
        "f_bookings_7d": [2.0, np.nan], "f_brand_tier": ["premium", None],
    })  # fmt: skip


def test_times_become_ages_and_the_request_gives_lead_days():
    columns, numerical, categorical = model_columns(
        _quotes(), ["listed_at", "bookings_7d", "brand_tier", "start_month"]
    )
    assert columns["item_age_days"].iloc[0] == 2.0 and np.isnan(columns["item_age_days"].iloc[1])
    assert list(columns["lead_days"]) == [4.0, 0.0]
    assert "start_month" not in columns  # the calendar always drifts: left out
    assert numerical == ["item_age_days", "bookings_7d", "lead_days", "rental_days"] and categorical == ["brand_tier"]
    assert list(columns["brand_tier"]) == ["premium", "(missing)"]


def test_a_feature_the_log_lacks_is_all_missing_not_an_error():
    columns, numerical, _ = model_columns(_quotes(), ["utilisation_30d"])
    assert columns["utilisation_30d"].isna().all() and "utilisation_30d" in numerical


def test_category_is_the_log_column_else_the_feature():
    assert list(category_of(_quotes())) == ["dress", "coats"]


def test_quality_reads_only_quotes_booked_with_a_price():
    outcomes = pd.DataFrame({"price_per_day": [20.0, 20.0, 20.0, 0.0], "paid_per_day": [22.0, np.nan, 18.0, 5.0],
                             "booked": [True, False, True, True], "category": ["a", "a", "b", "b"]})  # fmt: skip
    booked = outcome_columns(outcomes)
    assert len(booked) == 2  # not the unbooked one, nor the zero quote
    assert np.allclose(booked["log_ratio"], np.log([22 / 20, 18 / 20]))
    assert np.allclose(booked["ape"], [2 / 22, 2 / 18]) and list(booked["abs_error"]) == [2.0, 2.0]
