"""The compiled batch reader reads exactly what kafka-python reads, and refuses what it refuses."""

from __future__ import annotations

import random

import numpy as np
import pytest
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from streaming.wire.record_blocks import RecordColumns

BASE = 1_000


def _records(rng: random.Random, n: int) -> list[tuple]:
    """(key, value, headers) with null and empty keys and values, multi-byte varint lengths and headers."""
    out = []
    for i in range(n):
        key = rng.choice([None, b"", f"item_{i}".encode(), bytes(rng.randrange(256) for _ in range(200))])
        value = rng.choice([None, b"", b'{"event_id":"e%d"}' % i, bytes(rng.randrange(256) for _ in range(rng.choice([5, 130, 20_000])))])  # fmt: skip
        headers = rng.choice([[], [("trace", b"abc")], [("a", None), ("b" * 150, b"x" * 300)]])
        out.append((key, value, headers))
    return out


def _batch(records: list[tuple], codec: int = 0, gaps: bool = False) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)  # fmt: skip
    for i, (key, value, headers) in enumerate(records):
        builder.append(i * 3 if gaps else i, timestamp=1_700_000_000_000 + i, key=key, value=value, headers=headers)
    raw = bytearray(builder.build())
    raw[:8] = BASE.to_bytes(8, "big")  # the broker's base offset
    return bytes(raw)


def _kafka_python(raw: bytes, first_offset: int) -> list[tuple]:
    batch = MemoryRecords(raw).next_batch()
    return [(r.offset, r.key, r.value or b"") for r in batch if r.offset >= first_offset]


def _ours(raw: bytes, first_offset: int) -> list[tuple]:
    block = RecordColumns.from_batch("t", 0, DefaultRecordBatch(raw), first_offset)
    return [(r.offset, r.key, r.value) for r in map(block.record, range(len(block)))]


@pytest.mark.parametrize(
    "codec", [DefaultRecordBatch.CODEC_NONE, DefaultRecordBatch.CODEC_GZIP, DefaultRecordBatch.CODEC_LZ4]
)
@pytest.mark.parametrize("gaps", [False, True])  # offsets with holes, as compaction leaves them
def test_a_batch_reads_as_kafka_python_reads_it(codec, gaps):
    records = _records(random.Random(codec * 2 + gaps), 300)
    raw = _batch(records, codec, gaps)
    assert _ours(raw, 0) == _kafka_python(raw, 0)
    assert len(_ours(raw, 0)) == 300


@pytest.mark.parametrize("first", [BASE - 5, BASE, BASE + 1, BASE + 150, BASE + 299, BASE + 300])
def test_records_before_the_fetch_offset_are_left_out(first):
    raw = _batch(_records(random.Random(1), 300))
    ours = _ours(raw, first)
    assert ours == _kafka_python(raw, first)
    assert [offset for offset, _, _ in ours] == list(range(max(first, BASE), BASE + 300))


def test_blocks_concatenate_to_the_same_records():
    raws = [_batch(_records(random.Random(seed), 40)) for seed in range(3)]
    blocks = [RecordColumns.from_batch("t", 0, MemoryRecords(raw).next_batch(), BASE + 10 * k) for k, raw in enumerate(raws)]  # fmt: skip
    joined = RecordColumns.concat(blocks)
    assert [joined.record(i) for i in range(len(joined))] == [b.record(i) for b in blocks for i in range(len(b))]
    payloads = [joined.value(i) for i in range(len(joined))]
    assert np.array_equal(joined.value_ends, np.cumsum([len(p) for p in payloads]))
    assert joined.values.tobytes() == b"".join(payloads)


def test_damaged_batches_are_refused_or_read_as_kafka_python_reads_them():
    """Bytes of the record area flipped, cut or grown: never a wrong read, never any other error.

    The one refusal of kafka-python's that this pass does not share is a header key that is not
    UTF-8: headers are skipped, and the record is read rather than its whole batch refused."""
    rng = random.Random(5)
    raw = _batch(_records(rng, 30))
    header = DefaultRecordBatch.HEADER_STRUCT.size
    refused = 0
    for trial in range(3_000):
        body = bytearray(raw)
        if trial % 3 == 0:
            body = body[: rng.randrange(header, len(body))]
        elif trial % 3 == 1:
            body += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        for _ in range(rng.randrange(1, 4)):
            body[rng.randrange(header, len(body))] = rng.randrange(256)
        try:
            ours = _ours(bytes(body), 0)
        except CorruptRecordError:
            refused += 1
            continue
        try:
            theirs = [(r.offset, r.key, r.value or b"") for r in DefaultRecordBatch(bytes(body))]
        except CorruptRecordError as exc:  # header keys are skipped, not decoded: a non-UTF-8 one is no matter
            assert isinstance(exc.__context__, UnicodeDecodeError), exc
            continue
        assert ours == theirs
    assert refused > 1_000  # most damage is caught by the framing checks


def test_a_corrupt_batch_names_where_it_broke():
    raw = bytearray(_batch(_records(random.Random(2), 5)))
    raw[DefaultRecordBatch.HEADER_STRUCT.size] = 0x7F  # the first record's length: far past the batch
    with pytest.raises(CorruptRecordError, match="at offset 1000, record 0: a record's length runs past the batch"):
        RecordColumns.from_batch("t", 0, DefaultRecordBatch(bytes(raw)), 0)


def _at(raw: bytes, base: int) -> bytearray:
    out = bytearray(raw)
    out[:8] = base.to_bytes(8, "big")
    return out


def _take(raw: bytes, fetch_offset: int) -> tuple[list, int]:
    from kafka import TopicPartition
    from kafka.consumer.fetcher import Fetcher

    from streaming.wire.record_blocks import _BlockRecords

    theirs = Fetcher.PartitionRecords(fetch_offset, TopicPartition("t", 0), MemoryRecords(raw))
    with pytest.raises(CorruptRecordError):  # kafka-python stops at the bad batch, at the same offset every poll
        while theirs.take():  # what comes before it is returned first
            pass
    part = _BlockRecords(fetch_offset, TopicPartition("t", 0), MemoryRecords(raw))
    return list(part.take()), part.next_fetch_offset


@pytest.mark.parametrize("damage", ["a record's byte", "the last offset delta"])
def test_a_batch_failing_its_crc_is_one_bad_batch_and_the_next_batches_are_read(damage):
    from streaming.wire.record_blocks import BadBatch

    rng = random.Random(3)
    first, bad, last = (_at(_batch(_records(rng, 5)), base) for base in (1000, 1005, 1010))
    if damage == "a record's byte":
        bad[-3] ^= 0xFF
    else:
        bad[23:27] = (10**6).to_bytes(4, "big")  # the batch claims offsets up to 1,001,005
    blocks, next_offset = _take(bytes(first + bad + last), 1000)
    assert [type(b).__name__ for b in blocks] == ["RecordColumns", "BadBatch", "RecordColumns"]
    assert blocks[0].offsets.tolist() == list(range(1000, 1005))
    assert blocks[2].offsets.tolist() == list(range(1010, 1015))
    assert next_offset == 1015
    broken = blocks[1]
    assert isinstance(broken, BadBatch) and (broken.first_offset, broken.next_offset) == (1005, 1010)
    assert broken.letter_reason == "record batch: failed its CRC check; offsets 1005 to 1009 of t-0 skipped"
    assert broken.record().value == bytes(bad) and broken.record().offset == 1005


def test_a_last_batch_failing_its_crc_is_skipped_to_its_own_end():
    raw = _at(_batch(_records(random.Random(4), 5)), 2000)
    raw[-1] ^= 0x01
    blocks, next_offset = _take(bytes(raw), 2002)  # fetched from the middle of the batch
    assert len(blocks) == 1 and (blocks[0].first_offset, blocks[0].next_offset) == (2002, 2005)
    assert next_offset == 2005
