"""Request-time features: what the pricing service computes for a quote, and training for a booking.

``request_features`` is the one definition. It is written in integer arithmetic that means the
same on Python numbers and on numpy arrays, so a single quote (scalars, a few microseconds) and a
training frame (arrays of a million rows) run literally the same lines; ``for_quote`` and
``for_frame`` only convert their inputs to day numbers and epoch microseconds.

Times: ``quote_us`` is when the price is asked (for a booking, its event time), in microseconds
since the epoch (UTC). Days are UTC calendar days since 1970-01-01, as the simulator counts lead
days. Feast timestamps (``listed_at``, ``last_booking_at``) become ages in days at the quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd

DAY_US = 86_400_000_000
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# The model inputs this module produces, in order.
NAMES = (
    "start_month",  # 1..12, month of the rental start
    "start_season",  # 0 winter (Dec-Feb), 1 spring, 2 summer, 3 autumn
    "start_weekday",  # 0 Monday .. 6 Sunday
    "lead_days",  # whole days from the quote's day to the rental start, at least 0
    "rental_days",
    "item_age_days",  # days since the item was listed (null if unknown)
    "days_since_last_booking",  # null when the item has never been booked
)
# What the function reads from the feature service (the rest comes with the request).
TIME_FEATURES = ("listed_at", "last_booking_at")


def request_features(start_day, rental_days, quote_us, listed_at_us, last_booking_us) -> dict:
    """The features of a quote; every argument is a number or an array (NaN for a missing time)."""
    quote_day = quote_us // DAY_US
    # Month of a day number: Hinnant's civil-from-days, integer arithmetic only.
    z = start_day + 719_468
    doe = z - (z // 146_097) * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    month = ((5 * doy + 2) // 153 + 2) % 12 + 1
    lead = start_day - quote_day
    return {
        "start_month": month,
        "start_season": (month % 12) // 3,
        "start_weekday": (start_day + 3) % 7,  # 1970-01-01 was a Thursday
        "lead_days": lead * (lead > 0),
        "rental_days": rental_days,
        "item_age_days": (quote_us - listed_at_us) / DAY_US,
        "days_since_last_booking": (quote_us - last_booking_us) / DAY_US,
    }


# -- one quote -------------------------------------------------------------------------------------
def day_number(value: date | datetime | str) -> int:
    """A rental start (a date, or an ISO date string) as days since 1970-01-01."""
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    if isinstance(value, datetime):
        value = value.date()
    return value.toordinal() - EPOCH_ORDINAL


def epoch_us(value) -> float:
    """A moment (datetime, pandas Timestamp, ISO string or epoch µs) as epoch µs; NaN if missing."""
    if value is None or value is pd.NaT or value is pd.NA:
        return float("nan")
    if isinstance(value, int | float | np.integer | np.floating):  # NaN stays NaN
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return float((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def for_quote(rental_start, rental_days: int, quote_time, listed_at=None, last_booking_at=None) -> dict:
    """The features of one quote, from Python values (what a request and Feast's online read give)."""
    quote_us = epoch_us(quote_time)
    if quote_us != quote_us:
        raise ValueError("a quote needs its time (quote_time)")
    return request_features(
        day_number(rental_start), int(rental_days), int(quote_us), epoch_us(listed_at), epoch_us(last_booking_at)
    )


# -- a frame ---------------------------------------------------------------------------------------
def _us_array(values) -> np.ndarray:
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    us = stamps.astype("datetime64[us, UTC]").astype("int64").to_numpy().astype(float)
    us[stamps.isna().to_numpy()] = np.nan
    return us


def for_frame(columns: Mapping) -> dict:
    """The features of many rows at once: columns rental_start, rental_days, quote_time and the
    Feast times (a DataFrame, or a dict of lists as Feast's ``to_dict`` gives)."""
    start = pd.to_datetime(pd.Series(columns["rental_start"])).to_numpy().astype("datetime64[D]").astype(np.int64)
    quote = _us_array(columns["quote_time"])
    if np.isnan(quote).any():
        raise ValueError("every row needs its quote_time")
    missing = np.full(len(quote), np.nan)
    times = [_us_array(columns[c]) if c in columns else missing for c in TIME_FEATURES]
    days = pd.Series(columns["rental_days"]).to_numpy(dtype=np.int64)
    return request_features(start, days, quote.astype(np.int64), *times)
