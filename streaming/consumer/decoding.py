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

import numpy as np
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
from streaming.features.event_batch import EventBatch, event_key, objects
from streaming.features.pipeline import CANCELLED, CREATED
from streaming.features.windows import DAY_US

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


# The producers' own shape (``events.encode``): every field, in the models' order, of these types.
_NOT_STR = {"schema_version": int, "rental_days": int, "price_per_day": float}
_CANONICAL = {kind: (tuple(model.model_fields), tuple(_NOT_STR.get(name, str) for name in model.model_fields))
              for kind, model in _MODELS.items()}  # fmt: skip
_ZERO = ord("0")
_BAD = np.iinfo(np.int64).min  # a time or date the column parser does not take


def decode_many(payloads: list[bytes]) -> tuple[EventBatch, list[int], list[tuple[int, str]]]:
    """A poll's payloads as (the valid events as columns, the payload index of each, and
    (index, reason) for each invalid one), in payload order.

    Payloads in the producers' exact shape are checked with a few comparisons each, and their
    times parsed as whole columns; anything else goes through ``decode_args`` one by one."""
    rows, owner, slow = [], [], []
    created_keys, created_types = _CANONICAL[CREATED]
    cancelled_keys, cancelled_types = _CANONICAL[CANCELLED]
    for i, payload in enumerate(payloads):
        try:
            raw = orjson.loads(payload)
            keys, values = tuple(raw), tuple(raw.values())
        except (orjson.JSONDecodeError, TypeError, AttributeError):
            slow.append(i)
            continue
        types = tuple(map(type, values))
        if keys == created_keys and types == created_types and values[6] == CREATED:
            version, event_id, item_id, customer_id, booking_id, when, _, start, days, price, currency = values
        elif keys == cancelled_keys and types == cancelled_types and values[6] == CANCELLED:
            version, event_id, item_id, customer_id, booking_id, when, _ = values
            start, days, price, currency = None, 0, 0.0, "GBP"
        else:
            slow.append(i)
            continue
        if (version != SCHEMA_VERSION or not 0 < len(event_id) <= 128 or not 0 < len(item_id) <= 64
                or not 0 < len(customer_id) <= 64 or not 0 < len(booking_id) <= 128
                or (start is not None and (not 1 <= days <= MAX_RENTAL_DAYS or not 0 < price < 100_000
                                           or len(currency) != 3))):  # fmt: skip
            slow.append(i)
            continue
        rows.append((event_id, item_id, customer_id, when, start, round(price * 100), days))
        owner.append(i)
    batch, owner = _columns(rows, owner, slow)
    errors = []
    if slow:  # one by one, exactly as pydantic decides; merged back in payload order
        events, slow_owner = [], []
        for i in slow:
            try:
                events.append(decode_args(payloads[i]))
                slow_owner.append(i)
            except EventError as exc:
                errors.append((i, str(exc)))
        if events:
            order = np.argsort(np.array(owner + slow_owner), kind="stable")
            batch = EventBatch.concat([batch, EventBatch.from_tuples(events)]).take(order)
            owner = np.array(owner + slow_owner)[order].tolist()
    return batch, owner, errors


def _columns(rows: list[tuple], owner: list[int], slow: list[int]) -> tuple[EventBatch, list[int]]:
    """The fast rows as columns; a row whose times are not canonical moves to ``slow``."""
    if not rows:
        return EventBatch.empty(), []
    event_ids, items, customers, whens, starts, prices, days = zip(*rows, strict=True)
    at_us = _utc_times_us(whens)
    created = np.fromiter((start is not None for start in starts), bool, len(starts))
    start_days = _dates(["9999-12-31" if start is None else start for start in starts])
    ok = (at_us != _BAD) & (start_days != _BAD) & (start_days >= at_us // DAY_US)
    keep = np.flatnonzero(ok)
    if len(keep) < len(rows):
        slow += [owner[i] for i in np.flatnonzero(~ok).tolist()]
        slow.sort()
    batch = EventBatch(
        created, np.fromiter(map(event_key, event_ids), np.int64, len(event_ids)), objects(items),
        objects(customers), at_us, np.array(prices, np.int64), np.array(days, np.int64),
    )  # fmt: skip
    if len(keep) == len(rows):
        return batch, owner
    return batch.take(keep), [owner[i] for i in keep.tolist()]


def _digits(codes: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """The number in columns [start, stop) of each row, and whether they were all ASCII digits."""
    part = codes[:, start:stop].astype(np.int64) - _ZERO
    ok = ((part >= 0) & (part <= 9)).all(axis=1)
    value = np.zeros(len(codes), np.int64)
    for j in range(stop - start):
        value = value * 10 + part[:, j]
    return value, ok


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (valid ones)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def _date_fields(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since the epoch of ``YYYY-MM-DD`` at the start of each row, and which rows are valid."""
    year, ok_y = _digits(codes, 0, 4)
    month, ok_m = _digits(codes, 5, 7)
    day, ok_d = _digits(codes, 8, 10)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)] + (
        leap & (month == 2)
    )
    ok = (ok_y & ok_m & ok_d & (codes[:, 4] == ord("-")) & (codes[:, 7] == ord("-")) & (year >= 1)
          & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days))  # fmt: skip
    return _days_from_civil(year, month, day), ok


def _fixed(strings: tuple[str, ...] | list[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each string's code points in ``width`` columns (zero-padded), and each string's length."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    clipped = [s if len(s) <= width else "" for s in strings]
    return np.array(clipped, dtype=f"U{width}").view(np.uint32).reshape(len(strings), width), lengths


def _dates(strings: list[str]) -> np.ndarray:
    """``date.fromisoformat`` of canonical ``YYYY-MM-DD`` strings as days since the epoch; _BAD otherwise."""
    codes, lengths = _fixed(strings, 10)
    days, ok = _date_fields(codes)
    return np.where(ok & (lengths == 10), days, _BAD)


def _utc_times_us(strings: tuple[str, ...]) -> np.ndarray:
    """Microseconds since the epoch of ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` strings (pydantic's own
    UTC form); _BAD for any other string, which the one-by-one path then decides."""
    codes, lengths = _fixed(strings, 27)
    days, ok = _date_fields(codes)
    hour, ok_h = _digits(codes, 11, 13)
    minute, ok_mi = _digits(codes, 14, 16)
    second, ok_s = _digits(codes, 17, 19)
    micros, ok_us = _digits(codes, 20, 26)
    short = (lengths == 20) & (codes[:, 19] == ord("Z"))
    long = (lengths == 27) & (codes[:, 19] == ord(".")) & ok_us & (codes[:, 26] == ord("Z"))
    ok &= (ok_h & ok_mi & ok_s & (codes[:, 10] == ord("T")) & (codes[:, 13] == ord(":")) & (codes[:, 16] == ord(":"))
           & (hour <= 23) & (minute <= 59) & (second <= 59) & (short | long))  # fmt: skip
    at = ((days * 24 + hour) * 60 + minute) * 60 + second
    return np.where(ok, at * 1_000_000 + np.where(long, micros, 0), _BAD)


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


__all__ = ["EventError", "as_tuple", "decode_args", "decode_many"]
