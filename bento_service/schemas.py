"""The service's messages: HTTP bodies (and so its OpenAPI schema), and the prediction log record.

The gRPC messages (``protos/pricing.proto``) carry the same fields; ``grpc_server`` validates
them through these same models, so a field is invalid on both protocols for the same reason.

Every rule the API enforces is a JSON Schema keyword of its schema, so a client that follows
the schema is never refused. The one rule relative to today, the window a rental may start in,
is a ``pattern`` listing today's window of ISO dates, built per UTC day: the schema states it
and the validator matches the same expression, so the two cannot disagree.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rental.settings import get_settings
from streaming.events import MAX_RENTAL_DAYS

MAX_LEAD_DAYS = 730  # a quote is for a rental that starts from yesterday to two years ahead
BATCH_LIMIT = get_settings().serve_batch_limit
# Ids: 1-64 characters, none of them a control character or whitespace. The classes are spelt out
# (not ``\s``), because ECMA regexes (the schema's), Rust's (pydantic's) and Python's disagree on ``\s``.
ID_PATTERN = r"^[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def utc_today() -> date:
    return datetime.now(UTC).date()


def start_window(today: date) -> tuple[date, date]:
    """The first and last day a rental may start on, asked on ``today`` (UTC)."""
    return today - timedelta(days=1), today + timedelta(days=MAX_LEAD_DAYS)


def _two_digits(low: int, high: int) -> str:
    """A regex for the zero-padded numbers low..high (1-31), one alternative per tens digit."""
    parts = []
    for tens in range(low // 10, high // 10 + 1):
        first, last = max(low, tens * 10) - tens * 10, min(high, tens * 10 + 9) - tens * 10
        parts.append(f"{tens}{first}" if first == last else f"{tens}[{first}-{last}]")
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _month_end(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - timedelta(days=1)).day


@lru_cache(maxsize=4)
def start_pattern(today: date) -> str:
    """A regex matching exactly the ISO dates (YYYY-MM-DD) of ``start_window(today)``: each
    year's months grouped by the days they allow, so a full year is three alternatives."""
    first, last = start_window(today)
    groups: dict[tuple[int, int, int], list[int]] = {}
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        low = first.day if (year, month) == (first.year, first.month) else 1
        high = last.day if (year, month) == (last.year, last.month) else _month_end(year, month)
        groups.setdefault((year, low, high), []).append(month)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    alternatives = []
    for (year, low, high), months in groups.items():
        spelt = [f"{m:02d}" for m in months]
        alternation = spelt[0] if len(spelt) == 1 else "(?:" + "|".join(spelt) + ")"
        alternatives.append(f"{year}-{alternation}-{_two_digits(low, high)}")
    return "^(?:" + "|".join(alternatives) + ")$"


def _window_in_schema(schema: dict[str, Any]) -> None:
    """Called each time the JSON schema is generated: today's window, as the validator has it."""
    first, last = start_window(utc_today())
    schema["pattern"] = start_pattern(utc_today())
    schema["description"] = (
        f"first day of the rental (YYYY-MM-DD), from yesterday to {MAX_LEAD_DAYS} days ahead (UTC), "
        f"today {first} to {last}: `pattern` lists exactly those dates and moves on at midnight UTC"
    )


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"item_id": "item_000042", "customer_id": "cust_0000007", "rental_start": "2026-12-18", "rental_days": 4}
    ]})  # fmt: skip

    item_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    customer_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=ID_PATTERN)
    rental_start: date = Field(json_schema_extra=_window_in_schema)
    rental_days: int = Field(ge=1, le=MAX_RENTAL_DAYS)

    @field_validator("rental_start", mode="before")
    @classmethod
    def _bookable(cls, value: Any) -> Any:
        """The schema's pattern decides for a string (JSON, gRPC); a ``date`` is held to the same window."""
        today = utc_today()
        first, last = start_window(today)
        if isinstance(value, date) and not isinstance(value, datetime):
            if first <= value <= last:
                return value
        elif not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
            raise ValueError("must be a date written YYYY-MM-DD")
        elif re.fullmatch(start_pattern(today), value):
            return value
        else:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a calendar date") from None
        raise ValueError(f"must be from yesterday to {MAX_LEAD_DAYS} days ahead: {first} to {last} (UTC)")

    @field_validator("rental_days", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        """JSON Schema's ``integer`` is any number without a fraction (4.0 is one); text and booleans are not."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number of days")
        return value


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[QuoteRequest] = Field(
        min_length=1, max_length=BATCH_LIMIT, description=f"1 to {BATCH_LIMIT} items; an empty batch is refused"
    )


class Quote(BaseModel):
    item_id: str
    price_per_day: float = Field(description="rounded to the currency's minor unit")
    total_price: float = Field(description="price_per_day x rental_days")
    currency: str
    model_version: str
    features_as_of: datetime | None = Field(description="when the newest feature row used was written")
    degraded: bool = Field(description="priced from last-known features: the online store was unavailable")
    cold_start: bool = Field(description="the item has no bookings yet: priced from its static attributes")
    request_id: str


class BatchQuote(BaseModel):
    quotes: list[Quote]
    not_found: list[str] = Field(description="requested item ids that are not in the catalogue")


class Problem(BaseModel):
    error: str = Field(description="what was wrong, naming the field")
    fields: list[str] = Field(default_factory=list, description="the request fields at fault")


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    model_version: str | None
    model_error: str | None
    redis: bool
    kafka: bool
    predictions_logged: int
    predictions_pending: int
    predictions_unlogged: int = Field(description="quotes that could not be logged: failed sends and a full queue")
    requests_priced: int = Field(description="HTTP and gRPC requests priced by this worker")
    pricing_calls: int = Field(description="feature reads and model calls they took: concurrent requests share one")


class PredictionRecord(BaseModel):
    """One quote on the ``predictions`` topic (keyed by item id): what monitoring reads."""

    schema_version: Literal[1] = 1
    request_id: str
    quoted_at: datetime
    protocol: Literal["http", "grpc"]
    item_id: str
    customer_id: str | None
    rental_start: date
    rental_days: int
    features: dict[str, Any]
    price_per_day: float
    total_price: float
    currency: str
    model_version: str
    features_as_of: datetime | None
    degraded: bool
    cold_start: bool
    latency_ms: float
