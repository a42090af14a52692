"""The compiled HSET and HGET encoders give, command for command, the bytes redis-py itself sends;
the bulk-reply parser reads what Redis answers, whichever bytes the values hold and however the
answer arrives in pieces."""

from __future__ import annotations

import os

import numpy as np
from redis.connection import PythonRespSerializer

from streaming.wire.packed import concatenated
from streaming.wire.resp import COMPLETE, INCOMPLETE, bulk_replies, hget_commands, hset_commands

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


def test_hget_commands_match_redis_py_for_the_picked_keys():
    keys = [b"", b"k", bytes(range(256)) * 3, "é-ü 💃".encode(), b"\r\n$-1\r\n"]
    key_bytes, key_ends = concatenated(keys)
    key_starts = np.concatenate([[0], key_ends[:-1]])
    picked = np.array([4, 0, 2, 2], np.int64)
    field = b"_ts:item_popularity"
    got = hget_commands(key_bytes, key_starts, key_ends, picked, np.frombuffer(field, np.uint8)).tobytes()
    assert got == b"".join(b"".join(PACK("HGET", keys[k], field)) for k in picked.tolist())


def _bulk_reply(value: bytes | None) -> bytes:
    return b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


def test_bulk_replies_read_values_nils_and_binary_at_every_cut():
    values = [b"\x08\x01", None, b"", b"\r\n\r\n$3\r\n", bytes(range(256)) * 50, None]
    wire = b"".join(map(_bulk_reply, values))
    expected = [b"" if v is None else v for v in values]
    for cut in range(len(wire)):  # a prefix is never taken for the whole answer
        _, _, status = bulk_replies(np.frombuffer(wire[:cut], np.uint8), len(values))
        assert status == INCOMPLETE, cut
    buf, ends, status = bulk_replies(np.frombuffer(wire, np.uint8), len(values))
    assert status == COMPLETE
    starts = [0, *ends[:-1].tolist()]
    assert [buf[a:b].tobytes() for a, b in zip(starts, ends.tolist(), strict=True)] == expected


def test_bulk_replies_point_at_an_error_reply():
    wire = _bulk_reply(b"x") + b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    _, _, status = bulk_replies(np.frombuffer(wire, np.uint8), 2)
    assert status == len(_bulk_reply(b"x"))
