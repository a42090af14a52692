"""Validated booking events as columns: what the pipeline applies and what stages forward.

Per event, Python costs more than the features themselves; as columns, a poll's events are
checked, de-duplicated, applied and forwarded with a few calls per poll. A forwarded batch is
one Arrow IPC stream of these columns (``to_ipc``/``from_ipc``), which the next stage reads
without touching each event.
"""

from __future__ import annotations

from dataclasses import dataclass

import mmh3
import numpy as np
import orjson
import pyarrow as pa

from streaming.events import CANCELLED, CREATED

FORMAT = b"2"  # forwarded batches; format 1 was JSON lists of tuples (``from_json_batch``)
SCHEMA = pa.schema(
    [
        ("created", pa.bool_()),  # a booking; False: a cancellation
        ("event_key", pa.int64()),  # ``event_key`` of the event id, for de-duplication
        ("item_id", pa.string()),
        ("customer_id", pa.string()),
        ("time_us", pa.int64()),
        ("price_pence", pa.int64()),  # 0 for a cancellation
        ("rental_days", pa.int64()),  # 0 for a cancellation
    ],
    metadata={b"rental.forwarded": FORMAT},
)


def event_key(event_id: str) -> int:
    """A compact, process-independent key for de-duplication (Python's str hash is salted):
    64 bits of murmur3, a fifth of blake2b's cost."""
    return mmh3.hash64(event_id)[0]


@dataclass(frozen=True)
class EventBatch:
    created: np.ndarray  # bool
    event_key: np.ndarray  # int64
    item_id: np.ndarray  # object (str)
    customer_id: np.ndarray  # object (str)
    time_us: np.ndarray  # int64
    price_pence: np.ndarray  # int64
    rental_days: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.time_us)

    @classmethod
    def from_tuples(cls, events: list[tuple]) -> EventBatch:
        """From the pipeline's input tuples: (kind, event_id, item_id, customer_id, time_us,
        price_pence, rental_days)."""
        if not events:
            return cls.empty()
        kinds, ids, items, customers, times, prices, days = zip(*events, strict=True)
        kind_array = np.array(kinds, dtype=object)
        created = kind_array == CREATED
        unknown = ~created & (kind_array != CANCELLED)
        if unknown.any():
            raise ValueError(f"unknown event kind {kinds[int(np.argmax(unknown))]!r}")
        return cls(
            created, np.fromiter(map(event_key, ids), np.int64, len(ids)), _objects(items), _objects(customers),
            np.array(times, np.int64), np.array(prices, np.int64), np.array(days, np.int64),
        )  # fmt: skip

    @classmethod
    def empty(cls) -> EventBatch:
        ints = np.zeros(0, np.int64)
        return cls(np.zeros(0, bool), ints, _objects(()), _objects(()), ints, ints, ints)

    def take(self, selected: np.ndarray) -> EventBatch:
        """The events a boolean mask or an index array selects, in order."""
        return EventBatch(*(column[selected] for column in self._columns()))

    @classmethod
    def concat(cls, batches: list[EventBatch]) -> EventBatch:
        if len(batches) == 1:
            return batches[0]
        return cls(*(np.concatenate(columns) for columns in zip(*(b._columns() for b in batches), strict=True)))

    def to_ipc(self) -> bytes:
        table = pa.Table.from_arrays([pa.array(column) for column in self._columns()], schema=SCHEMA)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, SCHEMA) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    @classmethod
    def from_ipc(cls, payload: bytes) -> EventBatch:
        """A forwarded batch; ``ValueError`` if it is not one of this format."""
        try:
            table = pa.ipc.open_stream(payload).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"not an Arrow IPC stream ({exc})") from exc
        if (table.schema.metadata or {}).get(b"rental.forwarded") != FORMAT or not table.schema.equals(SCHEMA):
            raise ValueError(f"unexpected columns {table.schema.names} (format {table.schema.metadata})")
        if any(column.null_count for column in table.columns):
            raise ValueError("a forwarded batch has null values")
        return cls(*(column.to_numpy() for column in table.columns))  # strings as an object array

    @classmethod
    def from_json_batch(cls, payload: bytes) -> EventBatch:
        """A forwarded batch of format 1 (``{"schema_version": 1, "events": [tuple, ...]}``),
        still read so that batches in flight across an upgrade are not lost."""
        try:
            return cls.from_tuples([tuple(args) for args in orjson.loads(payload)["events"]])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable ({exc!r})") from exc

    @classmethod
    def forwarded(cls, payload: bytes) -> EventBatch:
        """A forwarded batch of either format; ``ValueError`` with the reason if it is neither."""
        return cls.from_json_batch(payload) if payload[:1] == b"{" else cls.from_ipc(payload)

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self.created, self.event_key, self.item_id, self.customer_id, self.time_us, self.price_pence,
                self.rental_days)  # fmt: skip


def _objects(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
