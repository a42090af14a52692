"""Feature views, built from their declaration (``streaming/feature_store/views.py``).

Each view is a module attribute, as `feast apply` finds views; what a view holds (entity, ttl,
features and their types, source) comes from the declaration, so a feature is added there.
"""

from data_sources import SOURCES
from entities import ENTITIES
from feast import FeatureView, Field
from feast.types import Float64, Int64, PrimitiveFeastType, String, UnixTimestamp

from streaming.feature_store.views import FLOAT, INT, STRING, TIMESTAMP, VIEWS

FEAST_TYPES: dict[str, PrimitiveFeastType] = {INT: Int64, FLOAT: Float64, STRING: String, TIMESTAMP: UnixTimestamp}


def _view(name: str) -> FeatureView:
    view = VIEWS[name]
    return FeatureView(
        name=view.name,
        entities=[ENTITIES[view.entity.name]],
        ttl=view.ttl,
        schema=[Field(name=feature, dtype=FEAST_TYPES[kind]) for feature, kind in view.features.items()],
        source=SOURCES[name],
        online=view.online,
    )


item_attributes = _view("item_attributes")
item_popularity = _view("item_popularity")
category_season = _view("category_season")
customer_history = _view("customer_history")
customer_attributes = _view("customer_attributes")

FEATURE_VIEWS = {
    fv.name: fv for fv in (item_attributes, item_popularity, category_season, customer_history, customer_attributes)
}
if set(FEATURE_VIEWS) != set(VIEWS):
    raise RuntimeError(f"declared views without a Feast view here: {sorted(set(VIEWS) - set(FEATURE_VIEWS))}")
