"""The hand-written proto encoders give the bytes protobuf itself gives."""

from __future__ import annotations

import pytest
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from streaming.features.proto_bytes import EMPTY, ENCODERS, timestamp

INTS = [0, 1, 127, 128, 300, 1023, 1024, 2**31 - 1, 2**40, 2**63 - 1, -1, -300, -(2**63)]
FLOATS = [0.0, -0.0, 1.5, -2.25, 1e-300, 3.141592653589793, 1e300]


@pytest.mark.parametrize("value", INTS)
def test_int64(value):
    assert ENCODERS[ValueType.INT64](value) == ValueProto(int64_val=value).SerializeToString()


@pytest.mark.parametrize("value", [v for v in INTS if -(2**31) <= v < 2**31])
def test_int32(value):
    assert ENCODERS[ValueType.INT32](value) == ValueProto(int32_val=value).SerializeToString()


@pytest.mark.parametrize("value", FLOATS)
def test_double(value):
    assert ENCODERS[ValueType.DOUBLE](value) == ValueProto(double_val=value).SerializeToString()


@pytest.mark.parametrize("value", [v for v in FLOATS if abs(v) < 3e38])
def test_float(value):
    assert ENCODERS[ValueType.FLOAT](value) == ValueProto(float_val=value).SerializeToString()


@pytest.mark.parametrize("value", ["", "gown", "é" * 200, "x" * 20_000])
def test_string(value):
    assert ENCODERS[ValueType.STRING](value) == ValueProto(string_val=value).SerializeToString()


@pytest.mark.parametrize("us", [0, 1, 999_999, 1_000_000, 1_780_000_000_123_456, 1_780_000_000_000_000])
def test_unix_timestamp_and_timestamp(us):
    seconds, rest = divmod(us, 1_000_000)
    assert ENCODERS[ValueType.UNIX_TIMESTAMP](us) == ValueProto(unix_timestamp_val=seconds).SerializeToString()
    assert timestamp(us) == Timestamp(seconds=seconds, nanos=rest * 1_000).SerializeToString()


def test_empty_is_an_unset_value():
    assert ValueProto().SerializeToString() == EMPTY
