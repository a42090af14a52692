"""Kafka record batches read as columns: one compiled pass a batch, not a Python object a record.

kafka-python builds a ``ConsumerRecord`` for every record, ~20 µs each on these machines: two
thirds of the items stage's loop, and all of what a plain consumer does. The stages need only
each record's offset, key and value, so ``read_blocks`` has a consumer's fetcher hand each
record batch over as one ``RecordColumns`` (values end to end in one buffer, their ends, the
offsets and keys), read from the v2 record layout (KIP-98: length, attributes, timestamp and
offset deltas, key, value, headers) by a numba pass after kafka-python's own CRC check and
decompression. A poll then returns, per partition, a list of these blocks. A batch that cannot
be read (its CRC, its format, its framing) comes back as a ``BadBatch`` for the dead-letter
queue instead of raising: kafka-python raises at the same offset on every poll, so one damaged
batch would stop a stage for good.

Everything else stays kafka-python's: fetching, positions, rebalancing, and the handling of
transactions (aborted and control batches are dropped as it drops them); records before the
fetch offset (a fetch from the middle of a batch returns the whole batch) are left out as it
leaves them out. The hook is the fetcher's ``PartitionRecords`` class, an internal of
kafka-python 3 (pinned in uv.lock); ``read_blocks`` refuses a client without it rather than
misread. A unit test holds the pass to kafka-python's own reading of the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from kafka import KafkaConsumer
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from numba import njit

_ERRORS = {
    1: "a varint runs past the record",
    2: "a record's length runs past the batch",
    3: "a key, value or header runs past its record",
    4: "a negative header count or header key length",
    5: "a record's fields do not add up to its length",
    6: "bytes left over after the batch's last record",
}


@njit(cache=True, inline="always")
def _varint(buf, pos, stop):
    """Kafka's zigzag varint at ``pos``: (value, next position), or (0, -1) past ``stop`` (or
    when ``pos`` is already -1, so that a failed read carries through the next ones)."""
    value, shift = 0, 0
    while 0 <= pos < stop and shift < 64:
        byte = np.int64(buf[pos])
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
    return 0, -1


@njit(cache=True)
def _read(buf, pos, count, base_offset, first_offset):
    """The records of one uncompressed batch body from ``pos`` whose offset is at least
    ``first_offset``. Returns (offsets, values, value_ends, keys, key_ends, key_null, error
    code, record index of the error)."""
    stop = len(buf)
    offsets, value_ends, key_ends = np.empty((3, count), np.int64)
    values, keys = np.empty((2, stop), np.uint8)
    key_null = np.zeros(count, np.bool_)
    n, v, k = 0, 0, 0
    for r in range(count):
        length, pos = _varint(buf, pos, stop)
        if pos < 0:
            return offsets, values, value_ends, keys, key_ends, key_null, 1, r
        end = pos + length
        if length < 1 or end > stop:
            return offsets, values, value_ends, keys, key_ends, key_null, 2, r
        pos += 1  # attributes (int8, unused)
        _, pos = _varint(buf, pos, end)  # timestamp delta
        offset_delta, pos = _varint(buf, pos, end)
        key_len, pos = _varint(buf, pos, end)
        if pos < 0 or pos + max(key_len, 0) > end:
            return offsets, values, value_ends, keys, key_ends, key_null, 3, r
        key_at = pos
        pos += max(key_len, 0)
        value_len, pos = _varint(buf, pos, end)
        if pos < 0 or pos + max(value_len, 0) > end:
            return offsets, values, value_ends, keys, key_ends, key_null, 3, r
        value_at = pos
        pos += max(value_len, 0)
        headers, pos = _varint(buf, pos, end)
        if pos < 0:
            return offsets, values, value_ends, keys, key_ends, key_null, 1, r
        if headers < 0:
            return offsets, values, value_ends, keys, key_ends, key_null, 4, r
        for _ in range(headers):
            name_len, pos = _varint(buf, pos, end)
            if pos < 0:
                return offsets, values, value_ends, keys, key_ends, key_null, 1, r
            if name_len < 0:
                return offsets, values, value_ends, keys, key_ends, key_null, 4, r
            pos += name_len  # past ``end``: the next read fails
            header_len, pos = _varint(buf, pos, end)
            if pos < 0 or pos + max(header_len, 0) > end:
                return offsets, values, value_ends, keys, key_ends, key_null, 3, r
            pos += max(header_len, 0)
        if pos != end:
            return offsets, values, value_ends, keys, key_ends, key_null, 5, r
        offset = base_offset + offset_delta
        if offset >= first_offset:
            values[v : v + max(value_len, 0)] = buf[value_at : value_at + max(value_len, 0)]
            v += max(value_len, 0)
            keys[k : k + max(key_len, 0)] = buf[key_at : key_at + max(key_len, 0)]
            k += max(key_len, 0)
            offsets[n], value_ends[n], key_ends[n], key_null[n] = offset, v, k, key_len < 0
            n += 1
    if pos != stop:
        return offsets, values, value_ends, keys, key_ends, key_null, 6, count
    return offsets[:n], values[:v], value_ends[:n], keys[:k], key_ends[:n], key_null[:n], 0, 0


@dataclass(frozen=True)
class Record:
    """One record, for the dead-letter queue (the fields ``DeadLetters.send`` reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class RecordColumns:
    """A partition's records as columns: values (a null one is empty) end to end in ``values``,
    record i's ending at ``value_ends[i]``; keys likewise, ``key_null`` marking null keys."""

    topic: str
    partition: int
    offsets: np.ndarray
    values: np.ndarray
    value_ends: np.ndarray
    keys: np.ndarray
    key_ends: np.ndarray
    key_null: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def from_batch(cls, topic: str, partition: int, batch: DefaultRecordBatch, first_offset: int) -> RecordColumns:
        batch._maybe_uncompress()  # kafka-python's codecs; the body is then batch._buffer from batch._pos
        body = np.frombuffer(batch._buffer, np.uint8)
        *columns, error, at = _read(body, batch._pos, batch.records_count, batch.base_offset, first_offset)
        if error:
            raise CorruptRecordError(f"record batch of {topic}-{partition} at offset {batch.base_offset}, "
                                     f"record {at}: {_ERRORS[error]}")  # fmt: skip
        return cls(topic, partition, *columns)

    @classmethod
    def concat(cls, blocks: list[RecordColumns]) -> RecordColumns:
        if len(blocks) == 1:
            return blocks[0]
        first = blocks[0]

        def ends(column: str, buffer: str) -> np.ndarray:
            shifts = np.cumsum([0] + [len(getattr(b, buffer)) for b in blocks[:-1]])
            return np.concatenate([getattr(b, column) + shift for b, shift in zip(blocks, shifts, strict=True)])

        return cls(first.topic, first.partition, np.concatenate([b.offsets for b in blocks]),
                   np.concatenate([b.values for b in blocks]), ends("value_ends", "values"),
                   np.concatenate([b.keys for b in blocks]), ends("key_ends", "keys"),
                   np.concatenate([b.key_null for b in blocks]))  # fmt: skip

    def value(self, i: int) -> bytes:
        return self.values[self.value_ends[i - 1] if i else 0 : self.value_ends[i]].tobytes()

    def record(self, i: int) -> Record:
        key = None if self.key_null[i] else self.keys[self.key_ends[i - 1] if i else 0 : self.key_ends[i]].tobytes()
        return Record(self.topic, self.partition, int(self.offsets[i]), key, self.value(i))


@dataclass(frozen=True)
class BadBatch:
    """A record batch that cannot be trusted: it failed its CRC check, is not in the v2 format,
    or its records do not frame. None of its records is read (a CRC failure may be in any of
    them), so the rule is one dead letter for the whole batch, naming its partition and offsets
    and keeping its bytes, and the position moves past it: a stage never stops on it, and never
    applies a record it cannot vouch for. It ends where the next batch of the same fetch starts
    when that is sooner, since a damaged batch's own last offset may be the damage."""

    topic: str
    partition: int
    first_offset: int
    next_offset: int
    reason: str
    raw: bytes

    def __len__(self) -> int:
        return 0

    def record(self) -> Record:
        """Its stand-in record for the dead-letter queue: the batch's bytes at its first offset."""
        return Record(self.topic, self.partition, self.first_offset, None, self.raw)

    @property
    def letter_reason(self) -> str:
        return (f"record batch: {self.reason}; offsets {self.first_offset} to {self.next_offset - 1} "
                f"of {self.topic}-{self.partition} skipped")  # fmt: skip


class _Blocks(list):
    """A partition's blocks from one ``take``. The fetcher counts what ``take`` returns with
    ``len`` against ``max_poll_records``, so its length is the records it holds."""

    records = 0

    def __len__(self) -> int:
        return self.records


class _BlockRecords(Fetcher.PartitionRecords):
    """kafka-python's per-fetch record reader, yielding one ``RecordColumns`` per batch."""

    def _maybe_skip_record(self, record) -> bool:
        return False  # ``RecordColumns.from_batch`` leaves out the records before the fetch offset

    def _unpack_records(self, tp, records, key_deserializer, value_deserializer):
        batch = records.next_batch()
        while batch is not None:
            reason = self._distrust(batch)
            block = None
            if reason is None:
                self.leader_epoch = batch.leader_epoch
                if self._dropped(batch):
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
                try:  # the position moves past a batch only once it has been read
                    block = RecordColumns.from_batch(tp.topic, tp.partition, batch, self.fetch_offset)
                except Exception as exc:  # framing or decompression: the batch as a whole is bad
                    reason = str(exc)[:500] or type(exc).__name__
            following = records.next_batch()
            self.bytes_read += batch.size_in_bytes
            if block is not None:
                self.records_read += len(block)
                self.next_fetch_offset = batch.next_offset  # before the yield: a block is taken whole
                if len(block):
                    yield block
            else:
                end = batch.next_offset if following is None else min(batch.next_offset, following.base_offset)
                end = max(end, batch.base_offset + 1, self.next_fetch_offset)
                self.next_fetch_offset = end
                yield BadBatch(tp.topic, tp.partition, max(batch.base_offset, self.fetch_offset), end, reason,
                               bytes(batch._buffer))  # fmt: skip
            batch = following
        self.drain()

    def _distrust(self, batch: DefaultRecordBatch) -> str | None:
        """Why a batch cannot be read at all, or None."""
        if batch.magic != 2:
            return f"in message format v{batch.magic}; only v2 (Kafka 0.11 and later) is read"
        if self.check_crcs and not batch.validate_crc():
            return "failed its CRC check"
        return None

    def _dropped(self, batch: DefaultRecordBatch) -> bool:
        """Control batches, and batches of aborted transactions when reading committed only:
        the records kafka-python never returns."""
        if self.isolation_level != IsolationLevel.READ_COMMITTED or not batch.has_producer_id():
            return batch.is_control_batch
        self._consume_aborted_transactions_up_to(batch.last_offset)
        if self._contains_abort_marker(batch):
            self.aborted_producer_ids.discard(batch.producer_id)
            return True
        return self._is_batch_aborted(batch) or batch.is_control_batch

    def take(self, n: int | None = None) -> _Blocks:
        self._maybe_raise_next_inline_exception()
        blocks = _Blocks()
        try:
            for block in self.record_iterator:
                blocks.append(block)
                blocks.records += len(block) or 1  # a BadBatch counts, so the fetcher returns it
                if n is not None and blocks.records >= n:
                    break
        except Exception as exc:  # as kafka-python: what was read is returned, the error raised next time
            if not blocks:
                raise
            self._next_inline_exception = exc
        return blocks


def read_blocks(consumer: KafkaConsumer) -> KafkaConsumer:
    """Make ``consumer.poll`` return {partition: [RecordColumns or BadBatch, ...]}; ``max_records``
    still counts records (a bad batch as one)."""
    fetcher = getattr(consumer, "_fetcher", None)
    if not isinstance(fetcher, Fetcher) or getattr(fetcher, "PartitionRecords", None) is not Fetcher.PartitionRecords:
        raise RuntimeError("this kafka-python has no Fetcher.PartitionRecords to read record batches through: "
                           "install the version pinned in uv.lock")  # fmt: skip
    fetcher.PartitionRecords = _BlockRecords
    return consumer


def warm_up() -> None:
    """Load (or compile) the pass now rather than on the first poll."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1024)  # fmt: skip
    builder.append(0, timestamp=0, key=b"k", value=b"v", headers=[("h", b"x")])
    block = RecordColumns.from_batch("warm-up", 0, DefaultRecordBatch(bytes(builder.build())), 0)
    if block.record(0) != Record("warm-up", 0, 0, b"k", b"v"):
        raise RuntimeError("record_blocks misread a batch kafka-python built")
