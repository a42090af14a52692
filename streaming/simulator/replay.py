"""Booking history as the event stream the rental app would have sent.

Each booking becomes a ``booking_created`` event and, if cancelled, a ``booking_cancelled``
event; event ids are derived from the booking id, so replaying a history twice produces the
same ids and a consumer's de-duplication can recognise them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from streaming.events import BookingCancelled, BookingCreated, cancelled_event_id, created_event_id


def history_events(bookings: pd.DataFrame) -> Iterator[BookingCreated | BookingCancelled]:
    """Every event of the history in event-time order (creations before cancellations at a tie)."""
    created = bookings.assign(replay_time=bookings["event_time"], replay_kind=0)
    cancelled = bookings[bookings["cancelled_at"].notna()] if "cancelled_at" in bookings else bookings.iloc[:0]
    cancelled = cancelled.assign(replay_time=cancelled["cancelled_at"], replay_kind=1)
    timeline = pd.concat([created, cancelled]).sort_values(["replay_time", "replay_kind"], kind="stable")
    for row in timeline.itertuples(index=False):
        if row.replay_kind == 0:
            yield BookingCreated(
                event_id=created_event_id(row.booking_id),
                booking_id=row.booking_id,
                item_id=row.item_id,
                customer_id=row.customer_id,
                event_time=row.event_time.to_pydatetime(),
                rental_start=row.rental_start,
                rental_days=int(row.rental_days),
                price_per_day=float(row.price_per_day),
                currency=row.currency,
            )
        else:
            yield BookingCancelled(
                event_id=cancelled_event_id(row.booking_id),
                booking_id=row.booking_id,
                item_id=row.item_id,
                customer_id=row.customer_id,
                event_time=row.cancelled_at.to_pydatetime(),
            )
