"""Reading a feature service's rows from Redis in Feast's layout, at the rate serving needs.

``FeatureStore.get_online_features`` costs about 1.6 ms of Python for one item of the model's
service (its five views, 28 features), most of it building and unbuilding response protos;
a quote's whole budget is about 2 ms of CPU. This reader is the mirror of ``online.OnlineWriter``:
it takes the views, features and entity keys from Feast's registry and builds the keys and
field names as the writer does (``redis_layout``: Feast's own helpers), then reads each
distinct entity key once (the views of one entity share one Redis hash) in one round trip, and
decodes Feast's value protos itself.
It applies exactly the rules of Feast's Redis read: a missing field or key is null and a view's
row time is its ``_ts:<view>`` field (0 when absent); no ttl is applied.
``tests/integration/test_online_read.py`` checks it against ``get_online_features`` value for value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from feast import FeatureService, FeatureStore
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from google.protobuf.timestamp_pb2 import Timestamp
from redis import Redis

from streaming.feature_store.redis_layout import EntityKeys, view_fields

_PLAIN = frozenset({"string_val", "int64_val", "int32_val", "double_val", "float_val", "bool_val", "bytes_val"})
_parse_value = ValueProto.FromString
_parse_timestamp = Timestamp.FromString


def decode(raw: bytes | None):
    """A stored ValueProto as Feast's ``to_dict`` gives it (None when absent or unset)."""
    if not raw:
        return None
    value = _parse_value(raw)
    kind = value.WhichOneof("val")
    if kind is None:
        return None
    if kind in _PLAIN:
        return getattr(value, kind)
    return feast_value_type_to_python_type(value)  # timestamps, lists: Feast's own conversion


def _seconds(raw: bytes | None) -> float:
    if not raw:
        return 0.0
    ts = _parse_timestamp(raw)
    return ts.seconds + ts.nanos / 1e9


@dataclass(frozen=True)
class _Group:
    """The views of one entity (one Redis hash per entity value) and the fields to read from it."""

    join_key: str
    views: tuple[str, ...]  # view names, in the service's order
    fields: tuple[bytes | str, ...]  # per view: its "_ts:<view>" field, then its features' hashed names
    widths: tuple[int, ...]  # per view: 1 + its feature count
    features: tuple[str, ...]  # feature names, in ``fields`` order without the timestamps


@dataclass
class Rows:
    columns: dict[str, list]  # feature name -> one value per entity row, the service's order
    stamps: dict[str, list[float]]  # view name -> its row's event time per entity row (0: none)


class OnlineReader:
    def __init__(self, store: FeatureStore, redis: Redis, service: FeatureService):
        config = store.config
        self.redis = redis
        self._key = EntityKeys(config)
        self.feature_names: list[str] = []
        grouped: dict[str, list] = {}
        for projection in service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            names = [f.name for f in projection.features]
            self.feature_names += names
            (join_key,) = view.join_keys  # every view of this repo has one entity
            grouped.setdefault(join_key, []).append((view.name, *view_fields(view, config, names), names))
        self._groups = [
            _Group(join_key, tuple(v[0] for v in views), tuple(f for v in views for f in (v[1], *v[2])),
                   tuple(1 + len(v[2]) for v in views), tuple(n for v in views for n in v[3]))
            for join_key, views in grouped.items()
        ]  # fmt: skip
        self.join_keys = [g.join_key for g in self._groups]

    def read(self, entity_rows: list[dict[str, str]]) -> Rows:
        """``entity_rows``: one dict per row with a value for every join key (see ``join_keys``)."""
        distinct = [list(dict.fromkeys(row[g.join_key] for row in entity_rows)) for g in self._groups]
        with self.redis.pipeline(transaction=False) as pipe:
            for group, entities in zip(self._groups, distinct, strict=True):
                for entity in entities:
                    pipe.hmget(self._key(group.join_key, entity), group.fields)
            replies = iter(pipe.execute())
        columns: dict[str, list] = {}
        stamps: dict[str, list[float]] = {}
        for group, entities in zip(self._groups, distinct, strict=True):
            by_entity = {entity: next(replies) for entity in entities}
            per_row = [by_entity[row[group.join_key]] for row in entity_rows]
            start, feature = 0, 0
            for view, width in zip(group.views, group.widths, strict=True):
                stamps[view] = [_seconds(reply[start]) for reply in per_row]
                for j in range(start + 1, start + width):
                    columns[group.features[feature]] = [decode(reply[j]) for reply in per_row]
                    feature += 1
                start += width
        return Rows({name: columns[name] for name in self.feature_names}, stamps)


def as_of(stamps: dict[str, list[float]], n: int) -> list[datetime | None]:
    """The newest feature row behind each entity row (None: no view had a row)."""
    newest = [max((s[k] for s in stamps.values()), default=0.0) for k in range(n)]
    return [datetime.fromtimestamp(t, UTC) if t else None for t in newest]
