"""Booking events on the wire: one pydantic model per event type, validated on both ends.

Producers build these models and call ``encode``; consumers call ``decode`` and get either a
typed event or an ``EventError`` whose message names the field and the problem, ready to be
written to the dead-letter topic next to the original payload.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({SCHEMA_VERSION})
MAX_RENTAL_DAYS = 60
CREATED, CANCELLED = "booking_created", "booking_cancelled"  # the event types
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Integer microseconds since the epoch: the time unit of every window and row. (Integer
    arithmetic on the difference: exact, and a quarter of dividing by a one-µs timedelta.)"""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def created_event_id(booking_id: str) -> str:
    """Event ids derive from the booking id, so a replayed history repeats them and
    de-duplication recognises the repeats."""
    return f"{booking_id}:created"


def cancelled_event_id(booking_id: str) -> str:
    return f"{booking_id}:cancelled"


class EventError(ValueError):
    """A payload that is not a valid event; the message says which field and why."""


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="the contract's version; always send it")
    event_id: str = Field(
        min_length=1, max_length=128, description="unique per event: a repeated id is a redelivery, counted once"
    )
    item_id: str = Field(min_length=1, max_length=64, description="a listed item's id; also the message key")
    customer_id: str = Field(min_length=1, max_length=64)
    booking_id: str = Field(min_length=1, max_length=128)
    event_time: datetime = Field(description="when it happened, RFC 3339 with a time zone (2026-06-01T10:00:00Z)")

    @field_validator("event_time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone (for example 2025-06-01T10:00:00Z)")
        return value.astimezone(UTC)


class BookingCreated(_Event):
    """A customer booked an item: the label (price paid) and the demand signal."""

    event_type: Literal["booking_created"] = CREATED
    rental_start: date = Field(description="first day of the rental (YYYY-MM-DD), not before event_time's date")
    rental_days: int = Field(ge=1, le=MAX_RENTAL_DAYS)
    price_per_day: float = Field(gt=0, lt=100_000, allow_inf_nan=False, description="what the customer paid a day")
    currency: str = Field(default="GBP", min_length=3, max_length=3, description="ISO 4217 code")

    @field_validator("rental_start")
    @classmethod
    def _not_before_booking(cls, value: date, info) -> date:
        booked = info.data.get("event_time")
        if booked is not None and value < booked.date():
            raise ValueError(f"rental_start {value} is before the booking was made ({booked.date()})")
        return value


class BookingCancelled(_Event):
    """A booking was cancelled; ``booking_id`` names the booking it cancels."""

    event_type: Literal["booking_cancelled"] = Field(CANCELLED, description="cancels the booking named by booking_id")


BookingEvent = Annotated[Union[BookingCreated, BookingCancelled], Field(discriminator="event_type")]
_ADAPTER: TypeAdapter[BookingCreated | BookingCancelled] = TypeAdapter(BookingEvent)


def encode(event: BookingCreated | BookingCancelled) -> bytes:
    return event.model_dump_json().encode()


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem: ``field: message``, the way a person would want to read it."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "payload"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def decode(payload: bytes | str) -> BookingCreated | BookingCancelled:
    """Parse and validate one event; raise ``EventError`` with a readable reason. Whatever the
    bytes, nothing else is raised: one producer's bad message must not stop a consumer."""
    try:  # the common case in one pass of pydantic's JSON parser; the reasons come from the slow path
        return _ADAPTER.validate_json(payload)
    except ValidationError:
        pass
    try:  # ValueError covers bad JSON, invalid UTF-8 and integers past Python's digit limit
        raw = json.loads(payload)
    except RecursionError:
        raise EventError("malformed JSON: nested too deeply") from None
    except ValueError as exc:
        raise EventError(f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise EventError(f"payload: expected a JSON object, got {type(raw).__name__}")
    version = raw.get("schema_version")
    if version is None:
        raise EventError("schema_version: field required")
    if isinstance(version, list | dict) or version not in SUPPORTED_SCHEMA_VERSIONS:  # a list is unhashable
        raise EventError(
            f"schema_version: unsupported version {version!r} (supported: {sorted(SUPPORTED_SCHEMA_VERSIONS)})"
        )
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise EventError(describe_validation_error(exc)) from None
    except RecursionError:  # an object nested just below json's limit
        raise EventError("payload: nested too deeply") from None
