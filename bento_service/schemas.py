"""The service's messages: HTTP bodies (and so its OpenAPI schema), and the prediction log record.

The gRPC messages (``protos/pricing.proto``) carry the same fields; ``grpc_server`` validates
them through these same models, so a field is invalid on both protocols for the same reason.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from rental.settings import get_settings
from streaming.events import MAX_RENTAL_DAYS

MAX_LEAD_DAYS = 730  # a quote is for a rental that starts within two years
BATCH_LIMIT = get_settings().serve_batch_limit
Id = Field(min_length=1, max_length=64, pattern=r"^[^\s\x00-\x1f]+$")


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"item_id": "item_000042", "customer_id": "cust_0000007", "rental_start": "2026-12-18", "rental_days": 4}
    ]})  # fmt: skip

    item_id: str = Id
    customer_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[^\s\x00-\x1f]+$")
    rental_start: date = Field(description="first day of the rental (YYYY-MM-DD), from yesterday to two years ahead")
    rental_days: StrictInt = Field(ge=1, le=MAX_RENTAL_DAYS)

    @field_validator("rental_start")
    @classmethod
    def _bookable(cls, value: date) -> date:
        today = datetime.now(UTC).date()
        if not today - timedelta(days=1) <= value <= today + timedelta(days=MAX_LEAD_DAYS):
            raise ValueError(f"must be between yesterday and {MAX_LEAD_DAYS} days ahead (today is {today} UTC)")
        return value


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[QuoteRequest] = Field(min_length=1, max_length=BATCH_LIMIT, description=f"at most {BATCH_LIMIT}")


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
