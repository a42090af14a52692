"""Writing feature rows to the online store: Feast's Redis layout, at the rate a stream needs.

``FeatureStore.push`` converts a DataFrame through Arrow to protos and then Redis; it costs
about 115 µs a row (DESIGN.md), too slow for thousands of rows a second. This writer keeps
Feast's storage format exactly (Feast's own key and field-hash helpers, its value protos, its
"_ts:<view>" timestamp field, timestamps that only grow), but caches the entity keys and field
names, serialises values directly (``proto_bytes``) and sends a poll's rows as one Lua script
call of HSETs. The integration tests read what it writes back through
``FeatureStore.get_online_features`` and compare it with what Feast's own
``write_to_online_store`` writes for the same values.
"""

from __future__ import annotations

import pyarrow as pa
from feast import FeatureStore
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp
from redis import Redis

from rental.settings import Settings
from streaming.features.proto_bytes import EMPTY, ENCODERS, timestamp

# One HSET per key, in one round trip and one command: redis-py spends ~10 µs of Python on
# every pipelined command, more than Redis spends on the HSET. ARGV: the number of fields F,
# the F field names, then F values per key, in KEYS order.
HSET_MANY = """
local width = tonumber(ARGV[1])
local fields = {}
for k = 1, #KEYS do
  local offset = 1 + width + (k - 1) * width
  for j = 1, width do
    fields[2 * j - 1] = ARGV[1 + j]
    fields[2 * j] = ARGV[offset + j]
  end
  redis.call('HSET', KEYS[k], unpack(fields))
end
return #KEYS
"""
WRITE_CHUNK = 2_000  # keys per script call: Redis runs a script to the end before serving anyone else


class EntityKeys:
    """Feast's Redis key of an entity (its serialised entity key + the project), remembered per
    entity: serialising costs more than the write or read it serves. Bounded, so ids a client
    makes up cannot grow it forever."""

    LIMIT = 1_000_000

    def __init__(self, config):
        self._project, self._version = config.project, config.entity_key_serialization_version
        self._keys: dict[tuple[str, str], bytes] = {}

    def __call__(self, join_key: str, entity: str) -> bytes:
        found = self._keys.get((join_key, entity))
        if found is None:
            proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity)])
            found = _redis_key(self._project, proto, self._version)
            if len(self._keys) < self.LIMIT:
                self._keys[(join_key, entity)] = found
        return found


def view_fields(view, config, features: list[str]) -> tuple[str, list[bytes | str]]:
    """A view's timestamp field and its features' hash fields, as Feast names them in Redis."""
    stored_as = _versioned_fv_name(view, config)
    return f"_ts:{stored_as}", [_mmh3(f"{stored_as}:{name}") for name in features]


def _timestamp_us(proto_bytes: bytes | None) -> int:
    if not proto_bytes:
        return -1
    ts = Timestamp()
    ts.ParseFromString(proto_bytes)
    return ts.seconds * 1_000_000 + ts.nanos // 1_000


class OnlineWriter:
    def __init__(self, store: FeatureStore, settings: Settings):
        config = store.config
        self.redis = Redis.from_url(settings.redis_url)
        self.views = {}
        for fv in store.list_feature_views():
            ts_field, fields = view_fields(fv, config, [f.name for f in fv.features])
            names = [ts_field, *fields]
            encoders = [(f.name, ENCODERS[f.dtype.to_value_type()]) for f in fv.features]
            self.views[fv.name] = (fv.entity_columns[0].name, ts_field, names, encoders)
        self._hset_many = self.redis.register_script(HSET_MANY)
        self._redis_key = EntityKeys(config)
        # The stamp this writer last gave each key, so only keys it has not written yet need a
        # read first. Valid while this process owns the keys: ``forget`` at every rebalance.
        self._stamped: dict[tuple[bytes, str], int] = {}

    def forget(self) -> None:
        self._stamped.clear()

    def write(self, view: str, rows: pa.Table) -> int:
        """Write the latest row of each entity in ``rows`` (an engine's table, each entity's
        rows in time order); return how many were written."""
        if rows.num_rows == 0:
            return 0
        join_key, ts_field, names, encoders = self.views[view]
        latest = {entity: i for i, entity in enumerate(rows[join_key].to_pylist())}  # the last one wins
        latest_rows = rows.take(pa.array(list(latest.values()), pa.int64()))
        keys = [self._redis_key(join_key, entity) for entity in latest]
        stamped = self._stamped
        unknown = [key for key in keys if (key, ts_field) not in stamped]
        if unknown:
            with self.redis.pipeline(transaction=False) as pipe:
                for key in unknown:
                    pipe.hget(key, ts_field)
                for key, previous in zip(unknown, pipe.execute(), strict=True):
                    stamped[key, ts_field] = _timestamp_us(previous)
        columns = [[EMPTY if value is None else encode(value) for value in latest_rows[name].to_pylist()]
                   for name, encode in encoders]  # fmt: skip
        values: list[bytes] = []
        for key, row_us, *encoded in zip(keys, latest_rows["event_timestamp"].to_pylist(), *columns, strict=True):
            # This consumer owns the key, and its state is the truth. A row stamped at or
            # before the stored one (a restart recomputed it, and rows late events produce
            # are stamped with a clock that a crashed run may have moved further) would be
            # skipped by Feast's reader rule and the update silently lost: stamp it just
            # after the stored row instead, so time stays monotonic and nothing is dropped.
            at_us = max(row_us, stamped[key, ts_field] + 1)
            stamped[key, ts_field] = at_us
            values.append(timestamp(at_us))
            values += encoded
        width = len(names)
        for start in range(0, len(keys), WRITE_CHUNK):
            self._hset_many(keys=keys[start : start + WRITE_CHUNK],
                            args=[width, *names, *values[start * width : (start + WRITE_CHUNK) * width]])  # fmt: skip
        return len(keys)
