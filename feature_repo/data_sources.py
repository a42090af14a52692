"""Where features come from: Parquet folders of the offline store, and push sources for live rows.

Paths are absolute globs built from settings: Feast's DuckDB store reads a partitioned folder
only that way, and a relative path would resolve against whatever directory feast runs in.
"""

from feast import FileSource, PushSource

from rental.settings import get_settings
from streaming.feature_store.offline import view_glob

_settings = get_settings()


def _file(view: str) -> FileSource:
    return FileSource(name=f"{view}_parquet", path=view_glob(_settings, view), timestamp_field="event_timestamp")


item_attributes_source = _file("item_attributes")
customer_attributes_source = _file("customer_attributes")
item_popularity_source = PushSource(name="item_popularity_push", batch_source=_file("item_popularity"))
category_season_source = PushSource(name="category_season_push", batch_source=_file("category_season"))
customer_history_source = PushSource(name="customer_history_push", batch_source=_file("customer_history"))
