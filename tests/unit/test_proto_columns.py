"""The compiled column encoder gives, value by value, the bytes protobuf itself gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from streaming.feature_store.proto_columns import (
    DOUBLE,
    FLOAT,
    INT32,
    INT64,
    UNIX_SECONDS_FROM_US,
    column_matrix,
    encode_rows,
)

INTS = [0, 1, 127, 128, 300, 1023, 1024, 2**31 - 1, 2**40, 2**63 - 1, -1, -300, -(2**63)]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e-300, 3.141592653589793, 1e300]
TIMES_US = [0, 1, 999_999, 1_000_000, 1_780_000_000_123_456, 1_780_000_000_000_000]


def _values(at_us, columns: list[tuple[int, pa.Array]]) -> list[list[bytes]]:
    """Each row's encoded timestamp and values, split at the encoder's end offsets."""
    rows = len(at_us)
    values, nulls = column_matrix([array for _, array in columns], [code for code, _ in columns], rows)
    blob, ends = encode_rows(np.array(at_us, np.int64), values, nulls, np.array([c for c, _ in columns], np.int64))
    blob, width, out, start = blob.tobytes(), len(columns) + 1, [], 0
    for r in range(rows):
        row = []
        for j in range(width):
            stop = int(ends[r * width + j])
            row.append(blob[start:stop])
            start = stop
        out.append(row)
    assert start == len(blob)
    return out


def _column(code, values):
    return _values([0] * len(values), [(code, pa.array(values))])


def test_int64_and_int32():
    assert [r[1] for r in _column(INT64, INTS)] == [ValueProto(int64_val=v).SerializeToString() for v in INTS]
    small = [v for v in INTS if -(2**31) <= v < 2**31]
    assert [r[1] for r in _column(INT32, small)] == [ValueProto(int32_val=v).SerializeToString() for v in small]


def test_double_and_float():
    assert [r[1] for r in _column(DOUBLE, FLOATS)] == [ValueProto(double_val=v).SerializeToString() for v in FLOATS]
    small = [v for v in FLOATS if abs(v) < 3e38]
    assert [r[1] for r in _column(FLOAT, small)] == [ValueProto(float_val=v).SerializeToString() for v in small]


@pytest.mark.parametrize("us", TIMES_US)
def test_row_timestamp_and_unix_timestamp(us):
    ((stamp, unix),) = _values([us], [(UNIX_SECONDS_FROM_US, pa.array([us]))])
    seconds, rest = divmod(us, 1_000_000)
    assert stamp == Timestamp(seconds=seconds, nanos=rest * 1_000).SerializeToString()
    assert unix == ValueProto(unix_timestamp_val=seconds).SerializeToString()


def test_a_null_is_an_unset_value_and_rows_keep_their_columns_apart():
    rows = _values([5, 6], [(INT64, pa.array([None, 7])), (DOUBLE, pa.array([2.5, None]))])
    assert rows[0][1:] == [ValueProto().SerializeToString(), ValueProto(double_val=2.5).SerializeToString()]
    assert rows[1][1:] == [ValueProto(int64_val=7).SerializeToString(), b""]


def test_stored_timestamps_are_read_back_as_protobuf_gives_them():
    from streaming.feature_store.online_write import _timestamp_us  # the one-by-one reader, protobuf's own parser
    from streaming.feature_store.proto_columns import timestamps_us
    from streaming.wire.packed import concatenated

    protos = [b""]
    for us in [*TIMES_US, -1_000_000, -1, 253_402_300_799_999_999]:
        protos.append(Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1_000).SerializeToString())
    odd = Timestamp(seconds=5).SerializeToString() + b"\x1a\x00"  # a field this pass does not read
    got = timestamps_us(*concatenated([*protos, odd]), fallback=lambda proto: -7 if proto == odd else -8)
    assert got.tolist() == [*map(_timestamp_us, protos), -7]
    assert got[2] == 1 and got[-2] == 253_402_300_799_999_999
