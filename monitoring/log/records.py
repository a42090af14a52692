"""The prediction log's tables and their columns: what checks and reports read.

Three tables under ``settings.monitor_log_dir``, each a folder of Parquet parts partitioned by
day (``quote_date=YYYY-MM-DD`` for quotes and outcomes, ``received_date=`` for rejected):

- ``quotes``: every quote once (keyed by ``request_id``), written as it arrives: what drift
  checks read. The model's input features are flattened to ``f_<name>`` columns (numbers as
  float64; anything else as text).
- ``outcomes``: one row per quote once its outcome window has closed (final, never rewritten):
  what quality checks read. It repeats the quote's keys and price so a check needs no join.
- ``rejected``: records that are not valid quotes or bookings, with the reason and the bytes.

Times are UTC timestamps in microseconds. ``QUOTE_COLUMNS`` and ``OUTCOME_COLUMNS`` list the
fixed columns in order; their meaning is in monitoring/README.md.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from bento_service.schemas import PredictionRecord
from streaming.events import EPOCH, describe_validation_error, to_us

FEATURE_PREFIX = "f_"
MAX_REJECTED_BYTES = 65_536  # a rejected record's bytes kept in the table; longer ones are cut

QUOTE_COLUMNS: dict[str, pa.DataType] = {
    "request_id": pa.string(),
    "quoted_at": pa.timestamp("us", tz="UTC"),
    "quote_date": pa.string(),
    "protocol": pa.string(),
    "item_id": pa.string(),
    "customer_id": pa.string(),
    "category": pa.string(),  # the ``category`` feature, when the model reads one
    "rental_start": pa.date32(),
    "rental_days": pa.int32(),
    "price_per_day": pa.float64(),
    "total_price": pa.float64(),
    "currency": pa.string(),
    "model_version": pa.string(),
    "features_as_of": pa.timestamp("us", tz="UTC"),
    "feature_age_s": pa.float64(),  # quoted_at - features_as_of; null without features_as_of
    "degraded": pa.bool_(),
    "cold_start": pa.bool_(),
    "latency_ms": pa.float64(),
    "kafka_partition": pa.int32(),
    "kafka_offset": pa.int64(),
}

OUTCOME_COLUMNS: dict[str, pa.DataType] = {
    "request_id": pa.string(),
    "quoted_at": pa.timestamp("us", tz="UTC"),
    "quote_date": pa.string(),
    "item_id": pa.string(),
    "customer_id": pa.string(),
    "category": pa.string(),
    "model_version": pa.string(),
    "rental_days": pa.int32(),
    "price_per_day": pa.float64(),  # the quoted price
    "window_end": pa.timestamp("us", tz="UTC"),  # quoted_at + monitor_outcome_window_s (exclusive)
    "closed_at": pa.timestamp("us", tz="UTC"),  # the watermark when the row became final
    "late_quote": pa.bool_(),  # the quote arrived after its window had closed (joined at once)
    "booked": pa.bool_(),  # the quoting customer booked the item in the window
    "booking_id": pa.string(),  # that customer's first booking of it in the window
    "booked_at": pa.timestamp("us", tz="UTC"),
    "paid_per_day": pa.float64(),  # the price that booking paid a day
    "cancelled": pa.bool_(),  # that booking's cancellation was seen before the row became final
    "booked_any": pa.bool_(),  # anyone booked the item in the window
    "paid_any_per_day": pa.float64(),  # the first such booking's price a day
    "bookings_in_window": pa.int32(),  # distinct bookings of the item in the window
}

REJECTED_COLUMNS: dict[str, pa.DataType] = {
    "received_date": pa.string(),
    "received_at": pa.timestamp("us", tz="UTC"),
    "topic": pa.string(),
    "kafka_partition": pa.int32(),
    "kafka_offset": pa.int64(),
    "reason": pa.string(),
    "payload": pa.binary(),
}

# The order of a quote tuple in the join's open set (``join.Ledger``) and its saved state.
QUOTE_KEY_FIELDS = ("request_id", "quoted_us", "item_id", "customer_id", "category", "model_version",
                    "rental_days", "price_per_day")  # fmt: skip


class QuoteError(ValueError):
    """A ``predictions`` record that is not a valid ``PredictionRecord``; the message says why."""


def _us(moment: datetime) -> int:
    return to_us(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _feature_value(value: Any) -> Any:
    """Numbers stay numbers (booleans as 0/1, non-finite as null); anything else is its text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        value = float(value)
        return value if math.isfinite(value) else None
    return str(value)


def decode_quote(payload: bytes) -> PredictionRecord:
    """The quote in ``payload`` (the service's ``PredictionRecord`` JSON), or ``QuoteError``."""
    try:
        return PredictionRecord.model_validate_json(payload)
    except ValidationError as exc:
        if any(problem["type"] == "json_invalid" for problem in exc.errors()):
            raise QuoteError(f"malformed JSON: {exc.errors()[0]['msg']}") from None
        raise QuoteError(describe_validation_error(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise QuoteError(f"unreadable: {str(exc)[:200]}") from None


def quote_row(quote: PredictionRecord, partition: int, offset: int) -> dict[str, Any]:
    """The quote's row of the ``quotes`` table, features flattened."""
    quoted_us = _us(quote.quoted_at)
    as_of_us = None if quote.features_as_of is None else _us(quote.features_as_of)
    category = quote.features.get("category")
    row = {
        "request_id": quote.request_id,
        "quoted_at": quoted_us,
        "quote_date": quote_date(quoted_us),
        "protocol": quote.protocol,
        "item_id": quote.item_id,
        "customer_id": quote.customer_id,
        "category": None if category is None else str(category),
        "rental_start": quote.rental_start,
        "rental_days": quote.rental_days,
        "price_per_day": quote.price_per_day,
        "total_price": quote.total_price,
        "currency": quote.currency,
        "model_version": quote.model_version,
        "features_as_of": as_of_us,
        "feature_age_s": None if as_of_us is None else (quoted_us - as_of_us) / 1e6,
        "degraded": quote.degraded,
        "cold_start": quote.cold_start,
        "latency_ms": quote.latency_ms,
        "kafka_partition": partition,
        "kafka_offset": offset,
    }
    for name, value in quote.features.items():
        row[FEATURE_PREFIX + name] = _feature_value(value)
    return row


def quote_key(row: dict[str, Any]) -> tuple:
    """What the join keeps of an open quote (``QUOTE_KEY_FIELDS``)."""
    return (row["request_id"], row["quoted_at"], row["item_id"], row["customer_id"], row["category"],
            row["model_version"], row["rental_days"], row["price_per_day"])  # fmt: skip


DAY_US = 86_400 * 1_000_000


@lru_cache(maxsize=64)
def _day(day: int) -> str:
    return (EPOCH + timedelta(days=day)).date().isoformat()


def quote_date(moment_us: int) -> str:
    """The UTC date of a time in µs, as the partition names it."""
    return _day(moment_us // DAY_US)


def rejected_row(topic: str, partition: int, offset: int, reason: str, payload: bytes, now_us: int) -> dict:
    return {"received_date": quote_date(now_us), "received_at": now_us, "topic": topic, "kafka_partition": partition,
            "kafka_offset": offset, "reason": reason, "payload": payload[:MAX_REJECTED_BYTES]}  # fmt: skip


def _feature_column(values: list) -> pa.Array:
    """float64 when every value is a number (or null), else text."""
    if all(v is None or isinstance(v, float) for v in values):
        return pa.array(values, pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def to_table(rows: list[dict[str, Any]], columns: dict[str, pa.DataType]) -> pa.Table:
    """Rows as a table with the fixed columns' types; other keys (the features) after them, sorted."""
    arrays, names = [], []
    for name, kind in columns.items():
        arrays.append(pa.array([row.get(name) for row in rows], kind))
        names.append(name)
    extra = sorted({key for row in rows for key in row} - columns.keys())
    for name in extra:
        arrays.append(_feature_column([row.get(name) for row in rows]))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)
