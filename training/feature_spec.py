"""The model's feature service as read from the Feast registry: views, keys, ttls, files, types.

Both ways of building a training set (Feast's own join and the as-of join) read their feature
list, join keys, ttls and Parquet globs from here, so they cannot disagree about what to join.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from feast import FeatureService, FeatureStore
from feast.errors import FeatureServiceNotFoundException


class TrainingDataError(ValueError):
    """Training cannot start: the message says what is missing and which command makes it."""


@dataclass(frozen=True)
class ViewSpec:
    name: str
    join_key: str
    features: tuple[str, ...]
    ttl: timedelta | None  # None: no expiry
    path: str  # the absolute Parquet glob of the view's offline files


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    service: FeatureService
    views: tuple[ViewSpec, ...]
    categorical: tuple[str, ...]  # string-typed features

    @property
    def feature_refs(self) -> list[str]:
        return [f"{v.name}:{f}" for v in self.views for f in v.features]

    @property
    def join_keys(self) -> list[str]:
        return sorted({v.join_key for v in self.views})


def service_spec(store: FeatureStore, name: str) -> ServiceSpec:
    try:
        service = store.get_feature_service(name)
    except FeatureServiceNotFoundException:
        raise TrainingDataError(
            f"feature service {name!r} is not in the Feast registry: run `rental features apply`"
        ) from None
    views, categorical = [], []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        if len(view.join_keys) != 1:
            raise TrainingDataError(f"view {view.name} has join keys {view.join_keys}; training expects one")
        views.append(
            ViewSpec(
                name=projection.name_to_use(),
                join_key=view.join_keys[0],
                features=tuple(f.name for f in projection.features),
                ttl=view.ttl if view.ttl else None,
                path=view.batch_source.path,
            )
        )
        categorical += [f.name for f in projection.features if str(f.dtype) == "String"]
    return ServiceSpec(name, service, tuple(views), tuple(categorical))
