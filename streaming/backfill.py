"""Build the offline store from a booking history by running it through the feature pipeline.

The history is turned into the same event sequence the rental app sends (creations, then
cancellations, in event-time order) and fed to ``FeaturePipeline`` one event at a time, so
the backfill computes exactly what the live consumer computes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd

from rental.settings import Settings
from streaming.consumer.checkpoint import save_backfill
from streaming.events import CANCELLED, CREATED, cancelled_event_id, created_event_id
from streaming.feature_store.offline import write_rows
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.history.tables import UNKNOWN_LISTING_VALID_FROM, History

FLUSH_EVERY = 200_000
CHUNK = 20_000  # events per call of the window kernels (and per step of the progress bar)


def _us(series: pd.Series) -> np.ndarray:
    return (
        pd.to_datetime(series, utc=True).dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64").to_numpy()
    )


def timeline(bookings: pd.DataFrame) -> pd.DataFrame:
    """Every event of a history as columns, in the order a replay sends them."""
    created = pd.DataFrame(
        {
            "kind": CREATED,
            "event_id": [created_event_id(b) for b in bookings["booking_id"]],
            "item_id": bookings["item_id"].astype(str).to_numpy(),
            "customer_id": bookings["customer_id"].astype(str).to_numpy(),
            "time_us": _us(bookings["event_time"]),
            "price_pence": np.round(bookings["price_per_day"].to_numpy(float) * 100).astype(np.int64),
            "rental_days": bookings["rental_days"].astype(np.int64).to_numpy(),
            "order": 0,
        }
    )
    c = bookings[bookings["cancelled_at"].notna()] if "cancelled_at" in bookings else bookings.iloc[:0]
    cancelled = pd.DataFrame(
        {
            "kind": CANCELLED,
            "event_id": [cancelled_event_id(b) for b in c["booking_id"]],
            "item_id": c["item_id"].astype(str).to_numpy(),
            "customer_id": c["customer_id"].astype(str).to_numpy(),
            "time_us": _us(c["cancelled_at"]),
            "price_pence": 0,
            "rental_days": 0,
            "order": 1,
        }
    )
    events = pd.concat([created, cancelled], ignore_index=True)
    return events.sort_values(["time_us", "order"], kind="stable").drop(columns="order").reset_index(drop=True)


def static_rows(history: History) -> dict[str, pd.DataFrame]:
    """Item and customer attributes, valid from listing (items; ``UNKNOWN_LISTING_VALID_FROM``
    when the listing date is unknown, with ``listed_at`` null) or from the epoch (customers)."""
    listed = pd.to_datetime(history.items["listing_date"]).dt.tz_localize("UTC")
    items = history.items.assign(item_category=history.items["category"], listed_at=listed,
                                 event_timestamp=listed.fillna(pd.Timestamp(UNKNOWN_LISTING_VALID_FROM)))  # fmt: skip
    customers = history.customers.assign(event_timestamp=pd.Timestamp("1970-01-01", tz="UTC"))  # known all along
    return {"item_attributes": items, "customer_attributes": customers}


def run_backfill(
    history: History,
    settings: Settings,
    as_of: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> FeaturePipeline:
    """Write every view's rows to the offline store; return the pipeline at ``as_of``."""
    for view, frame in static_rows(history).items():
        write_rows(settings, view, frame, tag="backfill")
    pipeline = FeaturePipeline(Catalogue.from_items(history.items))
    events = timeline(history.bookings)
    columns = [
        events[c].tolist()
        for c in ("kind", "event_id", "item_id", "customer_id", "time_us", "price_pence", "rental_days")
    ]
    events_in_order = list(zip(*columns, strict=True))
    for start in range(0, len(events_in_order), CHUNK):
        chunk = events_in_order[start : start + CHUNK]
        pipeline.process_many(chunk)
        if (start + CHUNK) % FLUSH_EVERY == 0:
            _flush(pipeline, settings)
        if progress:
            progress(len(chunk))
    if as_of is not None:
        pipeline.advance(int(pd.Timestamp(as_of).tz_convert("UTC").value // 1_000))
    _flush(pipeline, settings)
    if as_of is not None:  # live consumers without a checkpoint start from here
        save_backfill(settings, pd.Timestamp(as_of).to_pydatetime(), pipeline.state())
    return pipeline


def _flush(pipeline: FeaturePipeline, settings: Settings) -> None:
    for view, table in pipeline.take_tables().items():
        write_rows(settings, view, table, tag="backfill")
