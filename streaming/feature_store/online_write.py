"""Writing feature rows to the online store: Feast's Redis layout, at the rate a stream needs.

``FeatureStore.push`` converts a DataFrame through Arrow to protos and then Redis; it costs
about 115 µs a row (docs/architecture.md), too slow for thousands of rows a second. This writer keeps
Feast's storage format exactly (Feast's own key and field-hash helpers, its value protos, its
"_ts:<view>" timestamp field, timestamps that only grow), but encodes a poll's rows column by
column in one compiled pass (``proto_columns``) and sends them as pipelined HSETs encoded in
another (``resp``): per value, redis-py's Python would cost more than Redis.
The integration tests read what it writes back through ``FeatureStore.get_online_features``
and compare it with what Feast's own ``write_to_online_store`` writes for the same values.

A stage's checkpoint saves its resume point only after ``flush`` has confirmed every row given
to ``write``. A failed write or read leaves rows the stage's state already counts missing from
Redis, so the writer stays failed: every later ``write`` and ``flush`` raises that first error,
and the stage stops and resumes from its last checkpoint rather than saving state past the
loss. Its connections carry ``stream_redis_timeout_s`` as their socket timeout, so a half-open
connection fails the stage after that long instead of hanging it.
"""

from __future__ import annotations

from itertools import repeat

import numpy as np
import pyarrow as pa
from feast import FeatureStore
from google.protobuf.timestamp_pb2 import Timestamp

from rental.connections import redis_client
from rental.settings import Settings
from streaming.feature_store.proto_columns import CODES, column_matrix, encode_rows, timestamps_us
from streaming.feature_store.redis_layout import EntityKeys, view_fields
from streaming.wire.packed import concatenated
from streaming.wire.resp import HgetMany, HsetPipe

TIMEOUT_SETTING = "RENTAL_STREAM_REDIS_TIMEOUT_S"  # stream_redis_timeout_s, as an operator sets it
WRITE_CHUNK = 10_000  # keys per pipelined write, to bound the size of one payload
UNSEEN = np.iinfo(np.int64).min  # no stamp known for the entity yet


def _timestamp_us(proto_bytes: bytes | None) -> int:
    if not proto_bytes:
        return -1
    ts = Timestamp()
    ts.ParseFromString(proto_bytes)
    return ts.seconds * 1_000_000 + ts.nanos // 1_000


class OnlineWriter:
    def __init__(self, store: FeatureStore, settings: Settings):
        config = store.config
        timeout_s = settings.stream_redis_timeout_s
        self.redis = redis_client(settings, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.views = {}
        for fv in store.list_feature_views():
            ts_field, fields = view_fields(fv, config, [f.name for f in fv.features])
            codes = [CODES.get(f.dtype.to_value_type()) for f in fv.features]
            field_names = concatenated([ts_field.encode(), *(f.encode() if isinstance(f, str) else f for f in fields)])
            self.views[fv.name] = (fv.entity_columns[0].name, ts_field, field_names,
                                   [f.name for f in fv.features], codes)  # fmt: skip
        self._pipe = HsetPipe(self.redis, timeout_setting=TIMEOUT_SETTING)
        self._hget_many = HgetMany(self.redis, timeout_setting=TIMEOUT_SETTING)
        self._failure: BaseException | None = None  # the first failed write or read: final
        self._redis_key = EntityKeys(config)
        # Per view, the stamp this writer last gave each entity, so only entities it has not
        # written yet need a read first. Valid while this process owns the keys: ``forget`` at
        # every rebalance.
        self._stamped: dict[str, dict[str, int]] = {}

    def forget(self) -> None:
        self.flush()  # what this writer has in flight lands before anyone else reads the keys
        self._stamped.clear()

    def flush(self) -> None:
        """Every row ``write`` was given is in Redis; the first failed write or read raises, now
        and at every later call."""
        self._raise_failure()
        try:
            self._pipe.flush()
        except BaseException as exc:
            self._failure = exc
            raise

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def write(self, view: str, rows: pa.Table) -> int:
        """Write the latest row of each entity in ``rows`` (an engine's table, each entity's
        rows in time order); return how many. The HSETs are queued: ``flush`` to know they landed."""
        self._raise_failure()
        try:
            return self._write(view, rows)
        except BaseException as exc:  # the rows were taken from their engine: they are lost to Redis
            self._failure = exc
            raise

    def _write(self, view: str, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        join_key, ts_field, fields, features, codes = self.views[view]
        if None in codes:
            raise TypeError(f"{view}: the stream writes only numeric and timestamp features")
        encoded = rows[join_key].combine_chunks().dictionary_encode()  # each entity once, and where it is
        codes_reversed = encoded.indices.to_numpy()[::-1]
        _, last_from_end = np.unique(codes_reversed, return_index=True)  # each entity's last row wins
        latest_rows = rows.take(pa.array(rows.num_rows - 1 - last_from_end, pa.int64()))
        entities = latest_rows[join_key].combine_chunks()
        names = entities.to_pylist()
        key_bytes, key_ends = self._redis_key.many(join_key, entities)
        stamped = self._stamped.setdefault(view, {})
        previous = np.fromiter(map(stamped.get, names, repeat(UNSEEN)), np.int64, len(names))
        unseen = np.flatnonzero(previous == UNSEEN)
        key_starts = np.concatenate([[0], key_ends[:-1]])
        for start in range(0, len(unseen), WRITE_CHUNK):  # keys not written yet: what is stored now
            chunk = unseen[start : start + WRITE_CHUNK]
            stored = self._hget_many(key_bytes, key_starts, key_ends, chunk, ts_field.encode())
            previous[chunk] = timestamps_us(*stored, _timestamp_us)
        # This consumer owns the key, and its state is the truth. A row stamped at or before the
        # stored one (a restart recomputed it, and rows late events produce are stamped with a
        # clock that a crashed run may have moved further) would be skipped by Feast's reader
        # rule and the update silently lost: stamp it just after the stored row instead, so
        # time stays monotonic and nothing is dropped.
        at_us = np.maximum(latest_rows["event_timestamp"].to_numpy(), previous + 1)
        stamped.update(zip(names, at_us.tolist(), strict=True))
        values, nulls = column_matrix([latest_rows[name] for name in features], codes, len(names))
        code_array = np.array(codes, np.int64)
        for start in range(0, len(names), WRITE_CHUNK):
            part = slice(start, start + WRITE_CHUNK)
            blob, ends = encode_rows(at_us[part], values[part], nulls[part], code_array)
            first = key_starts[start]
            self._pipe.hset_many(key_bytes[first : key_ends[part][-1]], key_ends[part] - first, fields, blob, ends)
        return len(names)

    def close(self) -> None:
        """Flush and disconnect; raises like ``flush``."""
        try:
            self._pipe.close()
        finally:
            self._hget_many.close()
        self._raise_failure()
