"""A booking's events: what the rental app sends when a booking is made and when it is cancelled.

The live stream and the replayed history both build their events here, so their event ids,
field mapping and types cannot drift apart. The ids derive from the booking id, so a booking
replayed twice repeats its ids and de-duplication recognises it.
"""

from __future__ import annotations

from datetime import date, datetime

from streaming.events import BookingCancelled, BookingCreated, cancelled_event_id, created_event_id


def booking_created(
    booking_id: str,
    item_id: str,
    customer_id: str,
    booked_at: datetime,
    rental_start: date,
    rental_days: int,
    price_per_day: float,
    currency: str,
) -> BookingCreated:
    """The booking as made; ``int`` and ``float`` take numpy and pandas scalars to the wire's types."""
    return BookingCreated(
        event_id=created_event_id(booking_id),
        booking_id=booking_id,
        item_id=item_id,
        customer_id=customer_id,
        event_time=booked_at,
        rental_start=rental_start,
        rental_days=int(rental_days),
        price_per_day=float(price_per_day),
        currency=currency,
    )


def booking_cancelled(booking_id: str, item_id: str, customer_id: str, cancelled_at: datetime) -> BookingCancelled:
    """The cancellation carries the booking's item and customer, so it lands on the same partition and rows."""
    return BookingCancelled(
        event_id=cancelled_event_id(booking_id),
        booking_id=booking_id,
        item_id=item_id,
        customer_id=customer_id,
        event_time=cancelled_at,
    )
