"""The contract with Feast's private helpers, which is why pyproject.toml pins Feast to one minor version.

``streaming/feature_store/redis_layout.py`` names Redis keys and hash fields with ``_redis_key``,
``_mmh3`` and ``_versioned_fv_name`` (and builds keys by hand where Feast's serialiser is too slow);
``bento_service/online_features.py`` takes Feast's own redis-py client through
``_get_provider().online_store._get_client``; the stream writer and the serving reader encode and
decode values in place of Feast's conversions. A Feast release may change any of these without
notice, and a changed key or field name orphans every row Redis holds, so each failure here names
what changed and asks for the pin to be revisited. What other tests already compare with Feast
(single keys in test_redis_layout, value bytes with hand-built protos in test_proto_columns, whole
rows through Redis in the integration tests) is not repeated.
"""

from __future__ import annotations

import importlib
import inspect
import random
import struct
import tomllib
from datetime import UTC, datetime, timedelta
from importlib import metadata

import mmh3
import numpy as np
import pyarrow as pa
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from rental.settings import REPO_ROOT, Settings

INSTALLED = Version(metadata.version("feast"))
PROJECT = "rental_pricing"
REQUIRED = inspect.Parameter.empty

# Every private name the project uses, with the parameters (name, default) it relies on.
HELPERS = {
    "feast.infra.online_stores.helpers._mmh3": [("key", REQUIRED)],
    "feast.infra.online_stores.helpers._redis_key": [
        ("project", REQUIRED),
        ("entity_key", REQUIRED),
        ("entity_key_serialization_version", 3),
    ],
    "feast.infra.online_stores.redis._versioned_fv_name": [("table", REQUIRED), ("config", REQUIRED)],
    "feast.infra.key_encoding_utils.serialize_entity_key_prefix": [
        ("entity_keys", REQUIRED),
        ("entity_key_serialization_version", 3),
    ],
    "feast.feature_store.FeatureStore._get_provider": [("self", REQUIRED)],
    "feast.infra.online_stores.redis.RedisOnlineStore._get_client": [
        ("self", REQUIRED),
        ("online_store_config", REQUIRED),
    ],
}


def _changed(helper: str, what: str) -> str:
    return (
        f"Feast {INSTALLED}: {helper} {what}. The project relies on this Feast internal "
        "(see tests/unit/test_feast_internals.py), so the feast pin in pyproject.toml must be "
        "revisited, and the code using it checked, before moving to this version."
    )


def _helper(path: str):
    module_name, _, rest = path.rpartition(".")
    owner = None
    while owner is None:
        try:
            owner = importlib.import_module(module_name)
        except ModuleNotFoundError:  # the path goes through a class: Module.Class.method
            module_name, _, outer = module_name.rpartition(".")
            rest = f"{outer}.{rest}"
            assert module_name, _changed(path, "has disappeared (its module no longer exists)")
    for name in rest.split("."):
        owner = getattr(owner, name, None)
        assert owner is not None, _changed(path, "has disappeared")
    return owner


def _pinned_feast() -> Requirement:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    (feast,) = [r for r in map(Requirement, pyproject["project"]["dependencies"]) if r.name == "feast"]
    return feast


def test_installed_feast_is_the_pinned_minor():
    specs = {spec.operator: Version(spec.version) for spec in _pinned_feast().specifier}
    assert set(specs) == {">=", "<"}, f"feast must be pinned as >=X.Y,<X.(Y+1) in pyproject.toml, not {specs}"
    major, minor = specs[">="].release[:2]
    assert specs["<"].release[:2] == (major, minor + 1), f"the feast pin must span one minor version: {specs}"
    assert INSTALLED.release[:2] == (major, minor), (
        f"Feast {INSTALLED} is installed but pyproject.toml pins {major}.{minor}, the minor version whose "
        "private helpers this file checks: revisit the pin (and run `uv sync --frozen`)."
    )
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    (locked,) = [Version(p["version"]) for p in lock["package"] if p["name"] == "feast"]
    assert locked == INSTALLED, f"uv.lock holds feast {locked} but {INSTALLED} is installed: run `uv sync --frozen`"


@pytest.mark.parametrize("path", HELPERS)
def test_private_helpers_keep_their_signatures(path):
    parameters = inspect.signature(_helper(path)).parameters.values()
    got = [(p.name, p.default) for p in parameters]
    assert got == HELPERS[path], _changed(path, f"changed signature: {got}, expected {HELPERS[path]}")


def test_feasts_redis_store_names_keys_and_fields_with_the_same_helpers():
    """The project's keys and fields match Feast's only while Feast's Redis store calls these very helpers."""
    from feast.infra.online_stores import helpers
    from feast.infra.online_stores import redis as feast_redis

    for name in ("_mmh3", "_redis_key"):
        assert getattr(feast_redis, name, None) is getattr(helpers, name), _changed(
            f"feast.infra.online_stores.redis.{name}", "is no longer the helper in online_stores.helpers"
        )


def _edge_strings(count: int, seed: int) -> list[str]:
    """Empty, unicode (accents, CJK, emoji, combining marks, NUL), very long, and many random ids."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019_-: \t\x00éüßñ漢字カナ💃👗\u0301\U0010fffd"
    fixed = ["", "item_000001", "é", "💃" * 70, "漢" * 5000, "x" * 200_000, "\x00", "a:b:c", "_ts:item"]
    return fixed + ["".join(rng.choices(alphabet, k=rng.randrange(0, 64))) for _ in range(count - len(fixed))]


def test_field_hashes_are_murmur3_32_little_endian():
    from feast.infra.online_stores.helpers import _mmh3

    # Names Redis already holds: any other answer orphans every stored feature.
    assert _mmh3("item_popularity:bookings_7d") == bytes.fromhex("39b30f89"), _changed("_mmh3", "hashes differently")
    assert _mmh3("") == bytes(4), _changed("_mmh3", "hashes differently")
    for key in _edge_strings(5_000, seed=3):
        assert _mmh3(key) == mmh3.hash(key, signed=False).to_bytes(4, "little"), _changed(
            "_mmh3", f"gives a different field hash for {key[:40]!r} (length {len(key)})"
        )


def _view(tmp_path, name: str, features: list[str]):
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Float64

    item = Entity(name="item", join_keys=["item_id"])
    source = FileSource(name=f"{name}_source", path=str(tmp_path / "rows.parquet"), timestamp_field="event_timestamp")
    schema = [Field(name=feature, dtype=Float64) for feature in features]
    return FeatureView(name=name, entities=[item], schema=schema, source=source, ttl=timedelta(0))


@pytest.mark.parametrize(
    ("name", "features"),
    [
        ("item_popularity", ["bookings_7d"]),
        ("vue_été_💃", ["é", "💃", "漢字"]),
        ("v" * 500, [f"f{k}" for k in range(300)]),
    ],
)
def test_view_fields_are_the_plain_view_name_under_the_projects_config(tmp_path, name, features):
    from feast.infra.online_stores.redis import _versioned_fv_name

    from streaming.feature_store.redis_layout import view_fields
    from streaming.feature_store.store import repo_config

    config = repo_config(Settings(data_dir=tmp_path))
    assert getattr(config.registry, "enable_online_feature_view_versioning", None) is False, _changed(
        "RegistryConfig.enable_online_feature_view_versioning", "is gone or on by default"
    )
    view = _view(tmp_path, name, features)
    assert _versioned_fv_name(view, config) == name, _changed("_versioned_fv_name", "renames unversioned views")
    ts_field, fields = view_fields(view, config, features)
    assert ts_field == f"_ts:{name}", _changed("_versioned_fv_name", "changed the view's timestamp field")
    expected = [mmh3.hash(f"{name}:{feature}", signed=False).to_bytes(4, "little") for feature in features]
    assert fields == expected, _changed("_mmh3 or _versioned_fv_name", "changed the features' hash fields")


def test_an_entity_key_is_the_documented_v3_layout():
    """The bytes of a key Redis already holds, written out: Feast must still build exactly these."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    proto = EntityKeyProto(join_keys=["item_id"], entity_values=[ValueProto(string_val="item_000001")])
    layout = (
        struct.pack("<I", 1)  # one join key
        + struct.pack("<II", 2, 7)  # its name: STRING, 7 bytes
        + b"item_id"
        + struct.pack("<II", 2, 11)  # its value: STRING, 11 bytes
        + b"item_000001"
        + PROJECT.encode()
    )
    assert _redis_key(PROJECT, proto, 3) == layout, _changed("_redis_key", "builds entity keys differently")


@pytest.mark.parametrize("join_key", ["item_id", "", "catégorie_💃", "k" * 1000])
def test_entity_keys_in_bulk_equal_feasts(join_key):
    """``EntityKeys.many`` (the compiled path the stream writer uses) against Feast's ``_redis_key``
    key by key, and its hand-built layout still chosen over the slow fallback."""
    from types import SimpleNamespace

    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from streaming.feature_store.redis_layout import EntityKeys

    keys = EntityKeys(SimpleNamespace(project=PROJECT, entity_key_serialization_version=3))
    ids = _edge_strings(3_000, seed=len(join_key))
    for entities in (pa.array(ids, pa.string()), pa.array(ids, pa.string()).slice(5, 1_000)):
        buf, ends = keys.many(join_key, entities)
        assert keys._head(join_key) is not None, _changed(
            "serialize_entity_key_prefix or _redis_key", "no longer gives the layout EntityKeys builds by hand"
        )
        buf, starts = buf.tobytes(), [0, *ends[:-1].tolist()]
        for entity, start, end in zip(entities.to_pylist(), starts, ends.tolist(), strict=True):
            proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity)])
            assert buf[start:end] == _redis_key(PROJECT, proto, 3), _changed(
                "_redis_key", f"gives another key for {join_key[:20]!r}={entity[:40]!r} (length {len(entity)})"
            )


def _edge_values():
    from feast.protos.feast.types.Value_pb2 import Null
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    values = [ValueProto(), ValueProto(null_val=Null.NULL)]
    values += [ValueProto(string_val=s) for s in _edge_strings(40, seed=11)]
    values += [ValueProto(int64_val=v) for v in (0, 1, -1, 2**63 - 1, -(2**63))]
    values += [ValueProto(int32_val=v) for v in (0, -1, 2**31 - 1, -(2**31))]
    doubles = (0.0, -0.0, 5e-324, 1e308, float("inf"), float("-inf"), float("nan"))
    values += [ValueProto(double_val=v) for v in doubles]
    values += [ValueProto(float_val=v) for v in (0.0, -0.0, 1e-45, 3.4e38, 0.1, float("inf"), float("nan"))]
    values += [ValueProto(bool_val=v) for v in (False, True)]
    values += [ValueProto(bytes_val=v) for v in (b"", b"\x00\xff", bytes(range(256)) * 100)]
    return values


def test_the_readers_decoding_equals_feasts_conversion():
    """``online_read.decode`` reads plain kinds itself rather than through Feast's conversion."""
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto
    from feast.type_map import feast_value_type_to_python_type

    from streaming.feature_store.online_read import _PLAIN, decode

    kinds = {field.name for field in ValueProto.DESCRIPTOR.oneofs_by_name["val"].fields}
    assert kinds >= _PLAIN, _changed("Value proto", f"lost the fields {sorted(_PLAIN - kinds)}")
    for value in _edge_values():
        got, feast = decode(value.SerializeToString()), feast_value_type_to_python_type(value)
        assert (type(got), repr(got)) == (type(feast), repr(feast)), _changed(
            "feast_value_type_to_python_type", f"converts {str(value)[:60]!r} to {feast!r}, not {got!r}"
        )


def test_the_writers_value_bytes_equal_feasts_conversion():
    """The stream writer encodes columns itself; Feast's own push path converts the same values
    with ``python_values_to_proto_values``. Nulls are None. Stamps are after the epoch and before
    2200: Feast truncates a float of seconds, which loses the microseconds around the year 9999."""
    from feast.type_map import python_values_to_proto_values
    from feast.types import Float32, Float64, Int32, Int64, UnixTimestamp
    from feast.value_type import ValueType

    from streaming.feature_store.proto_columns import CODES, column_matrix, encode_rows

    for feast_type in (Int64, Int32, Float64, Float32, UnixTimestamp):
        assert feast_type.to_value_type() in CODES, _changed(f"{feast_type}.to_value_type()", "gives another type")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    stamps_us = [0, 1, 999_999, 1_000_000, 1_780_000_000_123_456, 1_780_000_000_999_999, 7_258_118_399_999_999]
    columns = {
        ValueType.INT64: [0, 1, -1, 300, 2**63 - 1, -(2**63), None],
        ValueType.INT32: [0, 1, -1, 2**31 - 1, -(2**31), None],
        ValueType.DOUBLE: [0.0, -0.0, 5e-324, 1e308, float("inf"), -2.5, None],
        ValueType.FLOAT: [0.0, -0.0, 1e-45, 0.1, 3.4e38, float("-inf"), None],
        ValueType.UNIX_TIMESTAMP: [*stamps_us, None],
    }
    for value_type, values in columns.items():
        code = CODES[value_type]
        matrix, nulls = column_matrix([pa.array(values)], [code], len(values))
        blob, ends = encode_rows(np.zeros(len(values), np.int64), matrix, nulls, np.array([code], np.int64))
        blob, ends = blob.tobytes(), ends.tolist()
        ours = [blob[ends[2 * r] : ends[2 * r + 1]] for r in range(len(values))]
        as_python = values
        if value_type == ValueType.UNIX_TIMESTAMP:
            as_python = [None if v is None else epoch + timedelta(microseconds=v) for v in values]
        feasts = [proto.SerializeToString() for proto in python_values_to_proto_values(as_python, value_type)]
        for value, mine, theirs in zip(values, ours, feasts, strict=True):
            assert mine == theirs, _changed(
                "python_values_to_proto_values", f"encodes {value_type.name} {value!r} as {theirs!r}, not {mine!r}"
            )


def test_the_pricing_service_holds_feasts_own_redis_client(tmp_path):
    """``OnlineFeatures`` sets timeouts through Feast's connection string and replaces the retry
    policy on the client Feast built: that client must be the one Feast keeps and uses."""
    from redis import Redis

    from bento_service.online_features import OnlineFeatures

    settings = Settings(data_dir=tmp_path, serve_redis_timeout_s=0.125, redis_port=6390)
    features = OnlineFeatures(settings)
    online_store = features.store._get_provider().online_store
    assert type(online_store).__name__ == "RedisOnlineStore", _changed("_get_provider().online_store", "is not Redis")
    assert online_store._get_client(features.store.config.online_store) is features.redis, _changed(
        "RedisOnlineStore._get_client", "no longer keeps one client"
    )
    assert isinstance(features.redis, Redis)
    kwargs = features.redis.connection_pool.connection_kwargs
    got = {k: kwargs.get(k) for k in ("host", "port", "db", "socket_timeout", "socket_connect_timeout")}
    expected = {"host": "127.0.0.1", "port": 6390, "db": 0, "socket_timeout": 0.125, "socket_connect_timeout": 0.125}
    assert {**got, "port": int(got["port"])} == expected, _changed(
        "RedisOnlineStore's connection string", f"is parsed differently: {got}"
    )
