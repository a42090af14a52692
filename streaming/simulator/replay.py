"""Booking history as the event stream the rental app would have sent.

Each booking becomes a ``booking_created`` event and, if cancelled, a ``booking_cancelled``
event (``booking_events.py``), so replaying a history twice produces the same event ids.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from streaming.events import BookingCancelled, BookingCreated
from streaming.simulator.booking_events import booking_cancelled, booking_created

# Bookings turned into Python values at a time: whole columns at once are several times faster
# than pandas row by row, and a chunk keeps a replay of millions of bookings in bounded memory.
REPLAY_CHUNK = 65_536


def history_events(bookings: pd.DataFrame) -> Iterator[BookingCreated | BookingCancelled]:
    """Every event of the history in event-time order (creations before cancellations at a tie,
    otherwise in the order of the table)."""
    has_cancellations = "cancelled_at" in bookings
    cancelled = cancelled_rows(bookings)
    row = np.concatenate([np.arange(len(bookings)), cancelled])
    is_cancel = np.repeat([False, True], [len(bookings), len(cancelled)])
    when = [_ns(bookings["event_time"])]
    if has_cancellations:
        when.append(_ns(bookings["cancelled_at"])[cancelled])
    timeline = np.lexsort((is_cancel, np.concatenate(when)))  # stable: ties keep the table's order
    for begin in range(0, len(timeline), REPLAY_CHUNK):
        step = timeline[begin : begin + REPLAY_CHUNK]
        yield from _events(bookings.iloc[row[step]], is_cancel[step], has_cancellations)


def cancelled_rows(bookings: pd.DataFrame) -> np.ndarray:
    """Positions of the cancelled bookings; a history without ``cancelled_at`` has none."""
    if "cancelled_at" not in bookings:
        return np.empty(0, np.int64)
    return np.flatnonzero(bookings["cancelled_at"].notna())


def _ns(times: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch, so timestamps stored in different units sort together."""
    return pd.to_datetime(times, utc=True).dt.as_unit("ns").array.asi8


def _events(
    part: pd.DataFrame, is_cancel: np.ndarray, has_cancellations: bool
) -> Iterator[BookingCreated | BookingCancelled]:
    cancelled_at = part["cancelled_at"].array.to_pydatetime() if has_cancellations else [None] * len(part)
    for cancel, booking_id, item_id, customer_id, booked_at, start, days, price, currency, cancelled in zip(
        is_cancel.tolist(),
        part["booking_id"].tolist(),
        part["item_id"].tolist(),
        part["customer_id"].tolist(),
        part["event_time"].array.to_pydatetime(),
        part["rental_start"].tolist(),
        part["rental_days"].tolist(),
        part["price_per_day"].tolist(),
        part["currency"].tolist(),
        cancelled_at,
        strict=True,
    ):
        if cancel:
            yield booking_cancelled(booking_id, item_id, customer_id, cancelled)
        else:
            yield booking_created(booking_id, item_id, customer_id, booked_at, start, days, price, currency)
