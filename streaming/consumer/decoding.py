"""Booking payloads to the pipeline's input tuples, at the rate of the topic.

``events.decode`` (pydantic) costs about 10 µs an event, half of what Kafka itself costs to
deliver it. Nearly every payload is the exact shape ``events.encode`` writes, so this checks that
shape directly: orjson, the key set, each value's type and bounds, and RFC 3339 times. Whatever it
is not sure of goes to ``events.decode``, which decides and words the reason for the DLQ; the fast
path only ever accepts what pydantic accepts, with the same values (a unit test compares them on
valid, malformed and edge-case payloads).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import orjson

from streaming.events import (
    MAX_RENTAL_DAYS,
    SCHEMA_VERSION,
    BookingCancelled,
    BookingCreated,
    EventError,
    decode,
)
from streaming.features.definitions import to_us
from streaming.features.pipeline import CANCELLED, CREATED

# The fields ``_fast`` reads and checks, by event type. The event models are the truth: if one
# gains or loses a field, importing this module fails rather than letting the fast path accept
# payloads pydantic would refuse.
_CHECKED = {
    CANCELLED: frozenset({"schema_version", "event_id", "item_id", "customer_id", "booking_id", "event_time",
                          "event_type"}),
    CREATED: frozenset({"schema_version", "event_id", "item_id", "customer_id", "booking_id", "event_time",
                        "event_type", "rental_start", "rental_days", "price_per_day", "currency"}),
}  # fmt: skip
_MODELS = {CREATED: BookingCreated, CANCELLED: BookingCancelled}
if {kind: frozenset(model.model_fields) for kind, model in _MODELS.items()} != _CHECKED:
    raise ImportError("streaming.events changed its event fields: update streaming.consumer.decoding._fast to match")
# Fields a payload may leave out (their defaults apply); all others must be present.
_OPTIONAL = {CREATED: ("schema_version", "currency"), CANCELLED: ("schema_version",)}
_N_REQUIRED = {kind: len(fields) - len(_OPTIONAL[kind]) for kind, fields in _CHECKED.items()}
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def _fast(payload: bytes) -> tuple | None:
    """The event's tuple if the payload is certainly valid; None when pydantic must decide."""
    try:
        raw = orjson.loads(payload)
        kind = raw["event_type"]
        fields = _N_REQUIRED[kind] + ("schema_version" in raw) + (kind == CREATED and "currency" in raw)
        event_id, item_id, customer_id, booking_id = raw["event_id"], raw["item_id"], raw["customer_id"], raw["booking_id"]  # fmt: skip
        when = raw["event_time"]
        if kind == CREATED:
            days, price, start = raw["rental_days"], raw["price_per_day"], raw["rental_start"]
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):  # not an object, or a field missing
        return None
    if len(raw) != fields:  # a field of no event: pydantic forbids it
        return None
    version = raw.get("schema_version", SCHEMA_VERSION)
    if (type(version) is not int or version != SCHEMA_VERSION
            or type(event_id) is not str or not 0 < len(event_id) <= 128
            or type(item_id) is not str or not 0 < len(item_id) <= 64
            or type(customer_id) is not str or not 0 < len(customer_id) <= 64
            or type(booking_id) is not str or not 0 < len(booking_id) <= 128
            or type(when) is not str or _TIME.match(when) is None):  # fmt: skip
        return None
    try:
        at = datetime.fromisoformat(when).astimezone(UTC)
    except ValueError:
        return None
    if kind == CANCELLED:
        return (CANCELLED, event_id, item_id, customer_id, to_us(at), 0, 0)
    currency = raw.get("currency", "GBP")
    if (type(days) is not int or not 1 <= days <= MAX_RENTAL_DAYS
            or (type(price) is not float and type(price) is not int) or not 0 < price < 100_000
            or type(currency) is not str or len(currency) != 3
            or type(start) is not str or _DATE.match(start) is None):  # fmt: skip
        return None
    try:
        if date.fromisoformat(start) < at.date():
            return None
    except ValueError:
        return None
    return (CREATED, event_id, item_id, customer_id, to_us(at), round(price * 100), days)


def as_tuple(event: BookingCreated | BookingCancelled) -> tuple:
    """A validated event as the pipeline's input tuple."""
    if isinstance(event, BookingCreated):
        return (CREATED, event.event_id, event.item_id, event.customer_id, to_us(event.event_time),
                round(event.price_per_day * 100), event.rental_days)  # fmt: skip
    return (CANCELLED, event.event_id, event.item_id, event.customer_id, to_us(event.event_time), 0, 0)


def decode_args(payload: bytes) -> tuple:
    """The pipeline's input tuple for one payload; ``EventError`` with the reason if it is not an event."""
    fast = _fast(payload)
    return fast if fast is not None else as_tuple(decode(payload))


__all__ = ["EventError", "as_tuple", "decode_args"]
