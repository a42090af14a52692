"""The feature store as training and serving read it: Feast's store and registry, and the fast
online reader. Everything outside ``streaming`` comes through these names, so the storage layout
(Redis keys, value protos, Parquet folders) can change behind them."""

from streaming.feature_store.online_read import OnlineReader, as_of
from streaming.feature_store.store import (
    FEATURE_REPO,
    FEATURE_SERVICE,
    apply,
    feature_store,
    model_feature_service,
    repo_config,
)

__all__ = [
    "FEATURE_REPO",
    "FEATURE_SERVICE",
    "OnlineReader",
    "apply",
    "as_of",
    "feature_store",
    "model_feature_service",
    "repo_config",
]
