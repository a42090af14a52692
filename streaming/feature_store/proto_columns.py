"""Feast's value protos for whole columns at once (numba): the stream writes thousands of rows
a second, and encoding value by value in Python (``proto_bytes``) cost ~10 µs a row.

``encode_rows`` writes, for every row, its Timestamp proto and then one ValueProto per column,
all into one byte buffer, with the end offset of each value. The bytes are exactly those of
``proto_bytes`` (``tests/unit/test_proto_columns.py`` compares them value by value); a null is
an empty value, which Feast reads as null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from feast.value_type import ValueType
from numba import njit

from streaming.wire.packed import concatenated

# Column codes; the values travel as int64 (doubles and floats as their float64 bits).
INT64, INT32, DOUBLE, FLOAT, UNIX_SECONDS_FROM_US = range(5)
CODES = {
    ValueType.INT64: INT64,
    ValueType.INT32: INT32,
    ValueType.DOUBLE: DOUBLE,
    ValueType.FLOAT: FLOAT,
    ValueType.UNIX_TIMESTAMP: UNIX_SECONDS_FROM_US,
}
MAX_VALUE_BYTES = 11  # a tag and a ten-byte varint
MAX_TIMESTAMP_BYTES = 2 + 10 + 5


@njit(cache=True, inline="always")
def _varint(buf, pos, value):
    u = np.uint64(value)  # a negative number as its 64-bit two's complement, as protobuf does
    while u > 0x7F:
        buf[pos] = np.uint8((u & np.uint64(0x7F)) | np.uint64(0x80))
        u >>= np.uint64(7)
        pos += 1
    buf[pos] = np.uint8(u)
    return pos + 1


@njit(cache=True, inline="always")
def _little_endian(buf, pos, bits, width):
    for b in range(width):
        buf[pos + b] = np.uint8((bits >> np.uint64(8 * b)) & np.uint64(0xFF))
    return pos + width


@njit(cache=True)
def encode_rows(at_us, values, nulls, codes):
    """(buffer, ends): row r's timestamp, then its column values, end at ``ends[r * (C + 1) + j]``."""
    rows, columns = values.shape
    buf = np.empty(rows * (MAX_TIMESTAMP_BYTES + columns * MAX_VALUE_BYTES), np.uint8)
    ends = np.empty(rows * (columns + 1), np.uint32)
    pos = 0
    for r in range(rows):
        seconds = at_us[r] // 1_000_000
        nanos = (at_us[r] % 1_000_000) * 1_000
        if seconds != 0:
            buf[pos] = 0x08
            pos = _varint(buf, pos + 1, seconds)
        if nanos != 0:
            buf[pos] = 0x10
            pos = _varint(buf, pos + 1, nanos)
        ends[r * (columns + 1)] = pos
        for c in range(columns):
            if not nulls[r, c]:
                v = values[r, c]
                code = codes[c]
                if code == INT64:
                    buf[pos] = 0x20
                    pos = _varint(buf, pos + 1, v)
                elif code == INT32:
                    buf[pos] = 0x18
                    pos = _varint(buf, pos + 1, v)
                elif code == DOUBLE:
                    buf[pos] = 0x29
                    pos = _little_endian(buf, pos + 1, np.uint64(v), 8)
                elif code == FLOAT:
                    single = np.float32(np.array([v]).view(np.float64)[0])
                    buf[pos] = 0x35
                    pos = _little_endian(buf, pos + 1, np.uint64(np.array([single]).view(np.uint32)[0]), 4)
                else:
                    buf[pos] = 0x40
                    pos = _varint(buf, pos + 1, v // 1_000_000)
            ends[r * (columns + 1) + 1 + c] = pos
    return buf[:pos], ends


def column_matrix(columns: list, codes: list[int], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrow columns as ``encode_rows``'s (values, nulls) matrices, a column of each per column."""
    encoded = [column_values(column, code) for column, code in zip(columns, codes, strict=True)]
    if not encoded:
        return np.zeros((rows, 0), np.int64), np.zeros((rows, 0), bool)
    return np.column_stack([v for v, _ in encoded]), np.column_stack([n for _, n in encoded])


def column_values(column, code: int) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow column as (int64 values for ``encode_rows``, null mask)."""
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_null(column.type):  # nothing but nulls
        return np.zeros(len(column), np.int64), nulls
    filled = column.fill_null(0).to_numpy(zero_copy_only=False)
    if code in (DOUBLE, FLOAT):
        return np.ascontiguousarray(filled, np.float64).view(np.int64), nulls
    return np.ascontiguousarray(filled, np.int64), nulls


@njit(cache=True)
def _timestamps_us(buf, ends):
    """Timestamp protos end to end: each as µs since the epoch; -1 if empty, -2 if this pass
    cannot read it (a field other than seconds and nanos as varints)."""
    out = np.empty(len(ends), np.int64)
    start = 0
    for i in range(len(ends)):
        pos, stop = start, ends[i]
        start = stop
        if pos == stop:
            out[i] = -1
            continue
        seconds, nanos, ok = np.int64(0), np.int64(0), True
        while pos < stop and ok:
            tag = buf[pos]
            pos += 1
            value, shift = np.uint64(0), 0
            while True:
                if pos >= stop or shift > 63:
                    ok = False
                    break
                b = buf[pos]
                pos += 1
                value |= np.uint64(b & 0x7F) << np.uint64(shift)
                shift += 7
                if b < 0x80:
                    break
            if tag == 0x08:
                seconds = np.int64(value)
            elif tag == 0x10:
                nanos = np.int64(value)
            else:
                ok = False
        out[i] = seconds * 1_000_000 + nanos // 1_000 if ok else -2
    return out


def timestamps_us(buf: np.ndarray, ends: np.ndarray, fallback) -> np.ndarray:
    """Stored Timestamp protos end to end in ``buf`` (cut at ``ends``; empty for none) as µs since
    the epoch, -1 for none; ``fallback`` reads any this pass cannot, given its bytes."""
    out = _timestamps_us(buf, ends)
    for i in np.flatnonzero(out == -2).tolist():
        out[i] = fallback(buf[ends[i - 1] if i else 0 : ends[i]].tobytes())
    return out


def warm_up() -> None:
    """Load (or compile) the encoder now rather than on the first write."""
    encode_rows(np.zeros(1, np.int64), np.zeros((1, 1), np.int64), np.zeros((1, 1), bool), np.zeros(1, np.int64))
    timestamps_us(*concatenated([b"", b"\x08\x01"]), None)
