"""Every feature view, declared once: its entity, ttl, and features as name -> type.

The Feast views (``feature_repo/features.py``), the Parquet files' Arrow schemas
(``offline.py``) and the rows the window specs compute (``streaming/features/definitions.py``)
are all built from or checked against this module, so adding a feature to a view means a line
here and the logic that computes it. Kept free of Feast, Arrow and the feature logic: the
pricing service imports it, and so does everything that writes features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

# The type vocabulary: each store maps these to its own types (Feast, Arrow).
INT, FLOAT, STRING, TIMESTAMP = "int", "float", "string", "timestamp"
TYPES = (INT, FLOAT, STRING, TIMESTAMP)
EVENT_TIMESTAMP = "event_timestamp"  # when a row's values became true; every view's time column


@dataclass(frozen=True)
class Entity:
    """What a view's rows describe; its one join key holds a string id."""

    name: str
    join_key: str
    description: str


@dataclass(frozen=True, eq=False)
class View:
    name: str
    entity: Entity
    # How long a row stays valid; zero: no expiry (static attributes). Windowed rows decay to
    # zero as events leave their windows, so their long ttl only turns "no history" into null.
    ttl: timedelta
    features: Mapping[str, str]  # name -> type, in the order of the view's columns
    pushed: bool  # written live by the stream through a push source, besides Parquet
    online: bool = True

    def __post_init__(self):
        unknown = {name: t for name, t in self.features.items() if t not in TYPES}
        if unknown:
            raise ValueError(f"{self.name}: unknown feature types {unknown}; known: {TYPES}")
        clash = {self.entity.join_key, EVENT_TIMESTAMP} & set(self.features)
        if clash:
            raise ValueError(f"{self.name}: features may not be named {sorted(clash)}")

    @property
    def join_key(self) -> str:
        return self.entity.join_key

    @property
    def columns(self) -> dict[str, str]:
        """The view's rows as stored: the join key, the row's time, then the features."""
        return {self.join_key: STRING, EVENT_TIMESTAMP: TIMESTAMP, **self.features}


ITEM = Entity("item", "item_id", "A listing in the catalogue.")
CUSTOMER = Entity("customer", "customer_id", "A renter.")
CATEGORY = Entity("category", "category", "dress, gown, outerwear, ...")
ENTITIES = (ITEM, CUSTOMER, CATEGORY)

_WINDOWED_TTL = timedelta(days=365)

ITEM_POPULARITY = View(
    "item_popularity",
    ITEM,
    _WINDOWED_TTL,
    {
        "bookings_7d": INT,
        "bookings_30d": INT,
        "revenue_7d": FLOAT,
        "revenue_30d": FLOAT,
        "avg_price_30d": FLOAT,
        "utilisation_30d": FLOAT,
        "cancellations_30d": INT,
        "last_booking_at": TIMESTAMP,
    },
    pushed=True,
)
CATEGORY_SEASON = View(
    "category_season",
    CATEGORY,
    _WINDOWED_TTL,
    {"category_bookings_7d": INT, "category_bookings_365d": INT, "category_demand_index": FLOAT},
    pushed=True,
)
CUSTOMER_HISTORY = View(
    "customer_history",
    CUSTOMER,
    timedelta(days=400),
    {
        "customer_bookings_365d": INT,
        "customer_avg_price_365d": FLOAT,
        "customer_avg_retail_365d": FLOAT,
        "customer_cancellations_365d": INT,
    },
    pushed=True,
)
ITEM_ATTRIBUTES = View(
    "item_attributes",
    ITEM,
    timedelta(0),
    {
        "brand": STRING,
        "brand_tier": STRING,
        "item_category": STRING,
        "colour": STRING,
        "size": STRING,
        "retail_price": FLOAT,
        "condition": STRING,
        "units": INT,
        "listed_at": TIMESTAMP,
    },
    pushed=False,
)
CUSTOMER_ATTRIBUTES = View(
    "customer_attributes",
    CUSTOMER,
    timedelta(0),
    {"segment": STRING, "preferred_category": STRING},
    pushed=False,
)

VIEWS: dict[str, View] = {
    view.name: view
    for view in (ITEM_POPULARITY, CATEGORY_SEASON, CUSTOMER_HISTORY, ITEM_ATTRIBUTES, CUSTOMER_ATTRIBUTES)
}

# The feature service the model reads, for training and for serving: its views, in the order
# that fixes the model's feature order.
FEATURE_SERVICE = "rental_price_v1"
SERVICE_VIEWS = ("item_attributes", "item_popularity", "category_season", "customer_history", "customer_attributes")
