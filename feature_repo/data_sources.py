"""Where features come from: each view's Parquet folder in the offline store, behind a push
source for the views the stream writes live (``pushed`` in ``streaming/feature_store/views.py``).

Paths are absolute globs built from settings: Feast's DuckDB store reads a partitioned folder
only that way, and a relative path would resolve against whatever directory feast runs in.
"""

from feast import FileSource, PushSource
from feast.data_source import DataSource

from rental.settings import get_settings
from streaming.feature_store.offline import view_glob
from streaming.feature_store.views import EVENT_TIMESTAMP, VIEWS

_settings = get_settings()


def _source(view: str) -> DataSource:
    files = FileSource(name=f"{view}_parquet", path=view_glob(_settings, view), timestamp_field=EVENT_TIMESTAMP)
    return PushSource(name=f"{view}_push", batch_source=files) if VIEWS[view].pushed else files


# `feast apply` finds each source through the view that reads it (``features.py``).
SOURCES: dict[str, DataSource] = {view: _source(view) for view in VIEWS}
