"""Feature views. Windowed views are fed live by the consumer (push) and backfilled as Parquet.

A ttl of zero means no expiry (static attributes). Windowed views get a long ttl: their rows
already decay to zero as events leave the windows, so a null only means "no history at all".
"""

from datetime import timedelta

from data_sources import (
    category_season_source,
    customer_attributes_source,
    customer_history_source,
    item_attributes_source,
    item_popularity_source,
)
from entities import category, customer, item
from feast import FeatureView, Field
from feast.types import Float64, Int64, String, UnixTimestamp

item_attributes = FeatureView(
    name="item_attributes",
    entities=[item],
    ttl=timedelta(0),
    schema=[
        Field(name="brand", dtype=String),
        Field(name="brand_tier", dtype=String),
        Field(name="item_category", dtype=String),
        Field(name="colour", dtype=String),
        Field(name="size", dtype=String),
        Field(name="retail_price", dtype=Float64),
        Field(name="condition", dtype=String),
        Field(name="units", dtype=Int64),
        Field(name="listed_at", dtype=UnixTimestamp),
    ],
    source=item_attributes_source,
    online=True,
)

item_popularity = FeatureView(
    name="item_popularity",
    entities=[item],
    ttl=timedelta(days=365),
    schema=[
        Field(name="bookings_7d", dtype=Int64),
        Field(name="bookings_30d", dtype=Int64),
        Field(name="revenue_7d", dtype=Float64),
        Field(name="revenue_30d", dtype=Float64),
        Field(name="avg_price_30d", dtype=Float64),
        Field(name="utilisation_30d", dtype=Float64),
        Field(name="cancellations_30d", dtype=Int64),
        Field(name="last_booking_at", dtype=UnixTimestamp),
    ],
    source=item_popularity_source,
    online=True,
)

category_season = FeatureView(
    name="category_season",
    entities=[category],
    ttl=timedelta(days=365),
    schema=[
        Field(name="category_bookings_7d", dtype=Int64),
        Field(name="category_bookings_365d", dtype=Int64),
        Field(name="category_demand_index", dtype=Float64),
    ],
    source=category_season_source,
    online=True,
)

customer_history = FeatureView(
    name="customer_history",
    entities=[customer],
    ttl=timedelta(days=400),
    schema=[
        Field(name="customer_bookings_365d", dtype=Int64),
        Field(name="customer_avg_price_365d", dtype=Float64),
        Field(name="customer_avg_retail_365d", dtype=Float64),
        Field(name="customer_cancellations_365d", dtype=Int64),
    ],
    source=customer_history_source,
    online=True,
)

customer_attributes = FeatureView(
    name="customer_attributes",
    entities=[customer],
    ttl=timedelta(0),
    schema=[Field(name="segment", dtype=String), Field(name="preferred_category", dtype=String)],
    source=customer_attributes_source,
    online=True,
)
