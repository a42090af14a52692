"""The compiled HSET encoder gives, command for command, the bytes redis-py itself sends."""

from __future__ import annotations

import os

import numpy as np
from redis.connection import PythonRespSerializer

from streaming.features.resp import hset_commands
from streaming.packed import concatenated

PACK = PythonRespSerializer(buffer_cutoff=1 << 30, encode=lambda value: value).pack


def _encoded(keys: list[bytes], fields: list[bytes], values: list[bytes]) -> bytes:
    key_bytes, key_ends = concatenated(keys)
    field_bytes, field_ends = concatenated(fields)
    value_bytes, value_ends = concatenated(values)
    return hset_commands(key_bytes, key_ends, field_bytes, field_ends, value_bytes, value_ends).tobytes()


def test_commands_match_redis_py_for_odd_lengths_and_bytes():
    rng = np.random.default_rng(7)
    fields = [b"_ts:item_popularity", b"", os.urandom(4), b"\r\n$*", bytes(range(256))]
    keys = [b"", b"k", bytes(range(256)) * 5, "é-ü 💃".encode(), *(os.urandom(int(n)) for n in rng.integers(1, 40, 50))]
    values = [os.urandom(int(n)) for n in rng.integers(0, 1_100, len(keys) * len(fields))]
    expected = b"".join(
        b"".join(PACK("HSET", key, *(x for pair in zip(fields, values[k * 5 : k * 5 + 5], strict=True) for x in pair)))
        for k, key in enumerate(keys)
    )
    assert _encoded(keys, fields, values) == expected


def test_lengths_with_every_digit_count():
    for n in (0, 9, 10, 99, 100, 12_345):
        value = b"v" * n
        assert _encoded([b"key"], [b"f"], [value]) == b"".join(PACK("HSET", b"key", b"f", value))
