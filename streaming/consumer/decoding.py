"""Booking payloads to the pipeline's events, at the rate of the topic.

``events.decode`` (pydantic) costs about 10 µs an event, half of what Kafka itself costs to
deliver it. Nearly every payload is the exact bytes ``events.encode`` writes: ``decode_many``
reads a poll's payloads of that layout in one compiled pass (``canonical_scan``, ~2 µs an event
with the columns built). The rest go one by one through ``_fast`` (orjson, the key set, each
value's type and bounds, RFC 3339 times) and, when that is not sure, ``events.decode``, which
decides and words the reason for the DLQ. Neither faster path ever accepts what pydantic
rejects or changes a value (unit tests compare them on valid, malformed, edge-case and
byte-mutated payloads).

``decode_records`` is a stage's way in: a partition's records, the app's payloads or the batches
an upstream stage forwarded, to events, each rejected record to the DLQ with its reason. No
payload can raise out of it (deep nesting, huge numbers, invalid UTF-8, a null value): whatever
a producer sends is a dead letter, never a stopped stage.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pyarrow as pa

from streaming.events import (
    CANCELLED,
    CREATED,
    MAX_RENTAL_DAYS,
    SCHEMA_VERSION,
    BookingCancelled,
    BookingCreated,
    EventError,
    decode,
    to_us,
)
from streaming.features.event_batch import EventBatch, event_key
from streaming.wire.json_scan import LITERALS, MAX_LENGTHS, STRING_FIELDS, scan

if TYPE_CHECKING:
    from streaming.consumer.dead_letters import DeadLetters
    from streaming.wire.record_blocks import RecordColumns

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


def decode_many(buf: np.ndarray, ends: np.ndarray) -> tuple[EventBatch, list[int], list[tuple[int, str]]]:
    """A poll's payloads (laid end to end in ``buf``, payload i ending at ``ends[i]``, as
    ``packed.concatenated`` lays them) as (the valid events as columns, the payload index of
    each, and (index, reason) for each invalid one), in payload order.

    Payloads in the producers' exact bytes are read by one compiled pass (``canonical_scan``);
    anything else goes through ``decode_args`` one by one and is merged back in order."""
    if not len(ends):
        return EventBatch.empty(), [], []
    ok, created, time_us, pence, days, strings, string_ends = scan(buf, ends, LITERALS, MAX_LENGTHS)
    fast = np.flatnonzero(ok)
    event_ids, items, customers = (_strings(strings[f], string_ends[f][fast]) for f in range(STRING_FIELDS))
    batch = EventBatch(created[fast], np.fromiter(map(event_key, event_ids), np.int64, len(fast)), items, customers,
                       time_us[fast], pence[fast], days[fast])  # fmt: skip
    owner = fast.tolist()
    errors, events, slow_owner = [], [], []
    for i in np.flatnonzero(~ok).tolist():  # exactly as pydantic decides, one by one
        try:
            events.append(decode_args(buf[ends[i - 1] if i else 0 : ends[i]].tobytes()))
            slow_owner.append(i)
        except EventError as exc:
            errors.append((i, str(exc)))
        except Exception as exc:  # whatever the bytes, a dead letter and never a stopped stage
            errors.append((i, f"undecodable payload: {type(exc).__name__}: {str(exc)[:200]}"))
    if events:
        order = np.argsort(np.array(owner + slow_owner), kind="stable")
        batch = EventBatch.concat([batch, EventBatch.from_tuples(events)]).take(order)
        owner = np.array(owner + slow_owner)[order].tolist()
    return batch, owner, errors


def decode_records(records: RecordColumns, reads_batches: bool,
                   dead_letters: DeadLetters) -> tuple[EventBatch, list[int]]:  # fmt: skip
    """The valid events of a poll's records as columns, and for each the index of its record."""
    owner: list[int] = []
    if reads_batches:
        batches = []
        for i in range(len(records)):
            try:
                batch = EventBatch.forwarded(records.value(i))
            except ValueError as exc:
                dead_letters.send(records.record(i), f"forwarded batch: {str(exc)[:200]}")
                continue
            except Exception as exc:  # Arrow raises several kinds on damaged bytes
                dead_letters.send(records.record(i), f"forwarded batch: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            batches.append(batch)
            owner += [i] * len(batch)
        return (EventBatch.concat(batches) if batches else EventBatch.empty()), owner
    batch, owner, errors = decode_many(records.values, records.value_ends)
    for i, reason in errors:
        dead_letters.send(records.record(i), reason)
    return batch, owner


def _strings(data: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """ASCII strings laid end to end in ``data`` (each ending at ``ends``) as an object array."""
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    array = pa.StringArray.from_buffers(len(ends), pa.py_buffer(offsets), pa.py_buffer(data[: offsets[-1]]))
    return array.to_numpy(zero_copy_only=False)


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


__all__ = ["EventError", "as_tuple", "decode_args", "decode_many", "decode_records"]
