"""What each feature means: the windows, the measures an event adds, and the row they make.

Item popularity, category season and customer history are all windowed sums over booking
events (``windows.py``); this module turns sums into the feature values the model reads. Each
view's features (names and types) are declared in ``streaming/feature_store/views.py``; a spec's
rows must hold exactly those, checked when the spec is made.

Money is summed in pence and days in whole days, so every sum is an exact integer. Times in
rows are integer microseconds since the epoch (UTC); writers turn them into timestamps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import pyarrow as pa

from streaming.feature_store.views import (
    CATEGORY_SEASON,
    CUSTOMER_HISTORY,
    FLOAT,
    INT,
    ITEM_POPULARITY,
    STRING,
    TIMESTAMP,
    View,
)
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


# What a column of each declared type may be as the engine hands it on: times are integer
# microseconds until a writer turns them into timestamps.
_FITS: dict[str, Callable[[pa.DataType], bool]] = {
    INT: pa.types.is_integer,
    FLOAT: pa.types.is_floating,
    STRING: pa.types.is_string,
    TIMESTAMP: lambda t: t == pa.int64(),
}


def _arrow_type(values: np.ndarray | pa.Array) -> pa.DataType:
    return values.type if isinstance(values, pa.Array) else pa.from_numpy_dtype(np.asarray(values).dtype)


def declared_spec(
    view: View, windows_us: tuple[int, ...], n_measures: int, columns: Callable[[Rows], dict], **options
) -> Spec:
    """The view's spec, its rows' features the declared ones in the declared order.

    ``columns`` runs once on no rows: a feature declared and not computed, computed and not
    declared, or of another type fails here, as a pipeline starts, not downstream in a store.
    """
    spec = Spec(view.name, view.join_key, windows_us, n_measures, columns, **options)
    w = len(windows_us)
    none = np.zeros(0, np.int64)
    made = spec.columns(Rows(np.empty(0, object), none, none, np.zeros((0, w, n_measures), np.int64), none, none))
    missing, extra = [f for f in view.features if f not in made], [f for f in made if f not in view.features]
    if missing or extra:
        raise ValueError(f"{view.name}: declared and not computed {missing}, computed and not declared {extra}")
    types = {f: _arrow_type(made[f]) for f in view.features}
    wrong = {f: str(t) for f, t in types.items() if not _FITS[view.features[f]](t)}
    if wrong:
        raise TypeError(f"{view.name}: computed types {wrong} do not fit the declaration {dict(view.features)}")
    if list(made) == list(view.features):
        return spec
    names = tuple(view.features)

    def in_declared_order(rows: Rows) -> dict:
        computed = columns(rows)
        return {name: computed[name] for name in names}

    return replace(spec, columns=in_declared_order)


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

    return declared_spec(ITEM_POPULARITY, ITEM_WINDOWS_US, ITEM_MEASURES, columns,
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

    return declared_spec(CATEGORY_SEASON, CATEGORY_WINDOWS_US, CATEGORY_MEASURES, columns, tick_us=DAY_US)


def customer_history_spec() -> Spec:
    """What a customer usually pays and rents, over the last year."""

    def columns(rows: Rows) -> dict:
        year = rows.sums[:, 0]
        return {
            "customer_bookings_365d": year[:, 0],
            "customer_avg_price_365d": _ratio(year[:, 1], year[:, 0], 100),
            # Items without a retail price add 0: no known retail at all is null, not 0.
            "customer_avg_retail_365d": _ratio(year[:, 2], year[:, 0] * (year[:, 2] > 0)),
            "customer_cancellations_365d": year[:, 3],
        }

    # Rows read sums only: a customer with nothing left in the year is forgotten whole.
    return declared_spec(CUSTOMER_HISTORY, CUSTOMER_WINDOWS_US, CUSTOMER_MEASURES, columns, event_times=False)
