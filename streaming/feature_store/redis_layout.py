"""Feast's names in Redis: an entity's key and a view's hash fields, built with Feast's own
helpers and remembered. Shared by the stream's writer (``online``) and the serving reader
(``online_read``), so the two can never disagree on where a value lives."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
from feast.infra.key_encoding_utils import serialize_entity_key_prefix
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from numba import njit

from streaming.wire.packed import concatenated

_U32 = struct.Struct("<I").pack


class EntityKeys:
    """Feast's Redis key of an entity (its serialised entity key + the project), remembered per
    entity: serialising costs more than the write or read it serves. Bounded, so ids a client
    makes up cannot grow it forever.

    Feast's serialiser builds a proto and costs ~14 µs a key; a stream meets a hundred thousand
    new items at once. For the common case (entity key version 3, one string join key) the key
    is a fixed head, the value's length and bytes, and the project: that layout is built here
    and checked against Feast's own function when a join key is first met, falling back to it
    if the two ever disagree."""

    LIMIT = 1_000_000
    PROBES = ("item_000001", "", "é-ü 💃")

    def __init__(self, config):
        self._project, self._version = config.project, config.entity_key_serialization_version
        self._project_bytes = self._project.encode()
        self._keys: dict[tuple[str, str], bytes] = {}
        self._heads: dict[str, bytes | None] = {}

    def __call__(self, join_key: str, entity: str) -> bytes:
        found = self._keys.get((join_key, entity))
        if found is None:
            head = self._head(join_key)
            if head is None:
                found = self._feast(join_key, entity)
            else:
                data = entity.encode()
                found = head + _U32(len(data)) + data + self._project_bytes
            if len(self._keys) < self.LIMIT:
                self._keys[(join_key, entity)] = found
        return found

    def many(self, join_key: str, entities: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        """The keys of many entities laid end to end (buffer, each key's end), built in one
        compiled pass from the Arrow array's own bytes when the layout allows."""
        head = self._head(join_key)
        if head is None or entities.null_count:
            return concatenated([self(join_key, entity) for entity in entities.to_pylist()])
        _, offsets, data = entities.buffers()
        offsets = np.frombuffer(offsets, np.int32)[entities.offset : entities.offset + len(entities) + 1]
        data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        return _string_keys(np.frombuffer(head, np.uint8), offsets.astype(np.int64), data,
                            np.frombuffer(self._project_bytes, np.uint8))  # fmt: skip

    def _head(self, join_key: str) -> bytes | None:
        """The join key's fixed key head (None: Feast's own function builds its keys)."""
        if join_key not in self._heads:
            self._heads[join_key] = self._string_head(join_key)
        return self._heads[join_key]

    def _feast(self, join_key: str, entity: str) -> bytes:
        proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity)])
        return _redis_key(self._project, proto, self._version)

    def _string_head(self, join_key: str) -> bytes | None:
        """The bytes before a string value's length, if this layout gives Feast's keys."""
        if self._version != 3:
            return None
        head = serialize_entity_key_prefix([join_key], 3) + _U32(ValueType.STRING.value)
        for probe in self.PROBES:
            data = probe.encode()
            if head + _U32(len(data)) + data + self._project_bytes != self._feast(join_key, probe):
                return None
        return head


@njit(cache=True)
def _string_keys(head, offsets, data, project):
    """head + little-endian uint32 length + bytes + project, for each string of an Arrow array."""
    n = len(offsets) - 1
    buf = np.empty(n * (len(head) + 4 + len(project)) + offsets[n] - offsets[0], np.uint8)
    ends = np.empty(n, np.int64)
    pos = 0
    for i in range(n):
        buf[pos : pos + len(head)] = head
        pos += len(head)
        length = offsets[i + 1] - offsets[i]
        for b in range(4):
            buf[pos + b] = (length >> (8 * b)) & 0xFF
        pos += 4
        buf[pos : pos + length] = data[offsets[i] : offsets[i + 1]]
        pos += length
        buf[pos : pos + len(project)] = project
        pos += len(project)
        ends[i] = pos
    return buf, ends


def view_fields(view, config, features: list[str]) -> tuple[str, list[bytes | str]]:
    """A view's timestamp field and its features' hash fields, as Feast names them in Redis."""
    stored_as = _versioned_fv_name(view, config)
    return f"_ts:{stored_as}", [_mmh3(f"{stored_as}:{name}") for name in features]


def warm_up() -> None:
    """Load (or compile) the key builder now rather than on the first write."""
    one = np.frombuffer(b"k", np.uint8)
    _string_keys(one, np.array([0, 1], np.int64), one, one)
