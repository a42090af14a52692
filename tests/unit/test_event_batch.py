"""Forwarded event batches: what a stage sends is what the next one reads, and nothing else is."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from streaming.events import CANCELLED, CREATED
from streaming.features.event_batch import EventBatch, event_key

EVENTS = [
    (CREATED, "e1", "item_1", "cust_1", 1_700_000_000_000_000, 2550, 4),
    (CANCELLED, "e2", "item_é💃", "", 1_700_000_000_000_001, 0, 0),
    (CREATED, "e3", "item_1", "cust_2", 1_699_999_999_000_000, 1, 60),
]


def _rows(batch: EventBatch) -> list[tuple]:
    return list(zip(*(column.tolist() for column in batch._columns()), strict=True))


def test_ipc_round_trip_keeps_every_value_and_order():
    batch = EventBatch.from_tuples(EVENTS)
    assert _rows(EventBatch.forwarded(batch.to_ipc())) == _rows(batch)
    assert batch.event_key.tolist() == [event_key(e[1]) for e in EVENTS]
    assert batch.created.tolist() == [True, False, True]


def test_slices_concat_and_empty_batches():
    batch = EventBatch.from_tuples(EVENTS)
    parts = [batch.take(slice(0, 1)), batch.take(slice(1, 3)), EventBatch.empty()]
    assert _rows(EventBatch.concat(parts)) == _rows(batch)
    assert len(EventBatch.forwarded(EventBatch.empty().to_ipc())) == 0


def test_format_1_json_batches_are_still_read():
    payload = orjson.dumps({"schema_version": 1, "events": [list(e) for e in EVENTS]})
    assert _rows(EventBatch.forwarded(payload)) == _rows(EventBatch.from_tuples(EVENTS))


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\x01garbage", b"{not json", b'{"events": 3}', b'{"schema_version": 1}', b'{"events": [["x"]]}'],
)
def test_unreadable_batches_raise_value_error(payload):
    with pytest.raises(ValueError):
        EventBatch.forwarded(payload)


def test_an_arrow_stream_of_other_columns_is_refused():
    sink = pa.BufferOutputStream()
    table = pa.table({"created": [True], "event_key": [1]})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(ValueError, match="unexpected columns"):
        EventBatch.forwarded(sink.getvalue().to_pybytes())


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown event kind"):
        EventBatch.from_tuples([("booking_moved", "e", "i", "c", 0, 0, 0)])
