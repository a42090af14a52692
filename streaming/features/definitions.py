"""What each feature means: the windows, the measures an event adds, and the row they make.

Item popularity, category season and customer history are all windowed sums over booking
events (``windows.py``); this module turns sums into the feature values the model reads.
Money is summed in pence and days in whole days, so every sum is an exact integer. Times in
rows are integer microseconds since the epoch (UTC); writers turn them into timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from streaming.features.windows import DAY_US, Rows, Spec

ITEM_WINDOWS_US = (7 * DAY_US, 30 * DAY_US)
CATEGORY_WINDOWS_US = (7 * DAY_US, 365 * DAY_US)
CUSTOMER_WINDOWS_US = (365 * DAY_US,)

# Measures per event. Item: bookings, revenue (pence), price per day (pence), rented days,
# cancellations. Category: bookings. Customer: bookings, price per day (pence), retail price
# of the item (pounds), cancellations.
ITEM_MEASURES = 5
CATEGORY_MEASURES = 1
CUSTOMER_MEASURES = 4


def _ratio(numerator: np.ndarray, denominator: np.ndarray, scale: float = 1.0) -> pa.Array:
    """numerator / denominator / scale, null where the denominator is zero."""
    zero = denominator == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        values = numerator / np.where(zero, 1, denominator) / scale
    return pa.array(values, type=pa.float64(), mask=zero)


def _time_or_null(us: np.ndarray) -> pa.Array:
    return pa.array(us, type=pa.int64(), mask=us < 0)


def item_popularity_spec(units: Mapping[str, int]) -> Spec:
    """Bookings, revenue and cancellations over 7 and 30 days, utilisation, last booking."""

    def columns(rows: Rows) -> dict:
        week, month = rows.sums[:, 0], rows.sums[:, 1]
        item_units = rows.attribute  # the item's units (1 if unknown)
        return {
            "bookings_7d": week[:, 0],
            "bookings_30d": month[:, 0],
            "revenue_7d": week[:, 1] / 100,
            "revenue_30d": month[:, 1] / 100,
            "avg_price_30d": _ratio(month[:, 2], month[:, 0], 100),
            "utilisation_30d": month[:, 3] / (item_units * 30),
            "cancellations_30d": month[:, 4],
            "last_booking_at": _time_or_null(rows.last_event_us),
        }

    return Spec("item_popularity", "item_id", ITEM_WINDOWS_US, ITEM_MEASURES, columns,
                attribute=lambda item_id: units.get(item_id, 1))  # fmt: skip


def category_season_spec() -> Spec:
    """Recent demand of a category against its long-run level (1.0 = a normal week)."""

    def columns(rows: Rows) -> dict:
        week, year = rows.sums[:, 0, 0], rows.sums[:, 1, 0]
        # Before a year of history exists, the long-run level is the history there is, in
        # whole days: it changes at midnight, when the spec's daily tick writes a row.
        span_days = np.clip(rows.at_us // DAY_US - rows.first_event_us // DAY_US, 7, 365)
        return {
            "category_bookings_7d": week,
            "category_bookings_365d": year,
            "category_demand_index": _ratio(week / 7, year / span_days),
        }

    return Spec("category_season", "category", CATEGORY_WINDOWS_US, CATEGORY_MEASURES, columns, tick_us=DAY_US)


def customer_history_spec() -> Spec:
    """What a customer usually pays and rents, over the last year."""

    def columns(rows: Rows) -> dict:
        year = rows.sums[:, 0]
        return {
            "customer_bookings_365d": year[:, 0],
            "customer_avg_price_365d": _ratio(year[:, 1], year[:, 0], 100),
            "customer_avg_retail_365d": _ratio(year[:, 2], year[:, 0]),
            "customer_cancellations_365d": year[:, 3],
        }

    return Spec("customer_history", "customer_id", CUSTOMER_WINDOWS_US, CUSTOMER_MEASURES, columns)
