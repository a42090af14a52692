"""Request-time features: one definition, the same answer for one quote and for a frame."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from training.predictor import request_features as rf


def _random_quotes(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    quote = pd.Timestamp("1999-12-25", tz="UTC") + pd.to_timedelta(rng.integers(0, 40 * 365 * 86_400_000_000, n), "us")
    start = (quote.tz_localize(None).normalize() + pd.to_timedelta(rng.integers(-3, 120, n), "D")).date
    listed = quote - pd.to_timedelta(rng.integers(0, 2000, n), "D")
    last = pd.Series(quote - pd.to_timedelta(rng.integers(1, 10**9, n), "us")).where(rng.random(n) > 0.3)
    return pd.DataFrame({"rental_start": start, "rental_days": rng.integers(1, 31, n), "quote_time": quote,
                         "listed_at": listed, "last_booking_at": last})  # fmt: skip


def test_one_quote_and_a_frame_give_identical_features():
    frame = _random_quotes(3_000)
    vectorised = rf.for_frame(frame)
    for i, row in enumerate(frame.to_dict("records")):
        one = rf.for_quote(**row)
        for name in rf.NAMES:
            np.testing.assert_equal(float(one[name]), float(vectorised[name][i]), err_msg=f"{name}, row {i}: {row}")


def test_calendar_features_match_the_calendar():
    frame = _random_quotes(3_000, seed=5)
    got = rf.for_frame(frame)
    start = pd.to_datetime(frame["rental_start"])
    np.testing.assert_array_equal(got["start_month"], start.dt.month)
    np.testing.assert_array_equal(got["start_weekday"], start.dt.dayofweek)
    seasons = {12: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2, 9: 3, 10: 3, 11: 3}
    np.testing.assert_array_equal(got["start_season"], start.dt.month.map(seasons))
    lead = (start - frame["quote_time"].dt.tz_localize(None).dt.normalize()).dt.days.clip(lower=0)
    np.testing.assert_array_equal(got["lead_days"], lead)


def test_a_quote_late_in_the_day_and_missing_times():
    quote = datetime(2026, 6, 12, 23, 59, tzinfo=UTC)
    got = rf.for_quote(date(2026, 6, 13), 4, quote, listed_at=quote - timedelta(days=365), last_booking_at=None)
    assert (got["start_month"], got["start_season"], got["start_weekday"]) == (6, 2, 5)  # a Saturday in summer
    assert got["lead_days"] == 1 and got["rental_days"] == 4
    assert abs(got["item_age_days"] - 365) < 1e-9
    assert np.isnan(got["days_since_last_booking"])  # never booked: missing, not an error


def test_the_same_quote_in_any_form():
    as_datetime = rf.for_quote(date(2026, 2, 14), 3, datetime(2026, 2, 1, 9, tzinfo=UTC))
    as_strings = rf.for_quote("2026-02-14", 3, "2026-02-01T09:00:00+00:00")
    as_naive_utc = rf.for_quote(pd.Timestamp("2026-02-14"), 3, pd.Timestamp("2026-02-01 09:00"))
    for name in rf.NAMES:
        np.testing.assert_equal(as_datetime[name], as_strings[name])
        np.testing.assert_equal(as_datetime[name], as_naive_utc[name])
