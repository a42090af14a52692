"""Through the real broker, a consumer reading record batches as columns sees exactly the records
a plain kafka-python consumer sees: from the start, from offsets inside a batch, with lz4 and
gzip batches, null keys and values and headers, and ``max_records`` still counting records."""

from __future__ import annotations

import random

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from rental.connections import kafka_options
from rental.settings import get_settings
from streaming.wire.record_blocks import RecordColumns, read_blocks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARTITIONS = 3
PER_CODEC = 1_500


def _produce(bootstrap: str, topic: str) -> int:
    rng = random.Random(11)
    sent = 0
    for codec in ("lz4", "gzip", None):
        producer = KafkaProducer(**kafka_options(get_settings(), bootstrap), acks="all", linger_ms=20,
                                 compression_type=codec)  # fmt: skip
        for i in range(PER_CODEC):
            key = rng.choice([None, f"k{i % 50}".encode()])
            value = rng.choice([None, b"", b'{"n":%d}' % i, rng.randbytes(rng.choice([3, 300, 5_000]))])
            if key is None and value is None:  # the client refuses a record with neither
                value = b""
            headers = rng.choice([[], [("trace", b"t%d" % i)]])
            producer.send(topic, key=key, value=value, headers=headers, partition=i % PARTITIONS)
            sent += 1
        producer.flush(timeout=60)
        producer.close(timeout=10)
    return sent


def _read(bootstrap: str, topic: str, starts: dict[int, int], blocks: bool, max_records: int = 700) -> list[tuple]:
    consumer = KafkaConsumer(**kafka_options(get_settings(), bootstrap), enable_auto_commit=False)
    if blocks:
        read_blocks(consumer)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, starts[tp.partition])
    ends = consumer.end_offsets(partitions)
    out, polls = [], 0
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        for tp, got in consumer.poll(timeout_ms=1000, max_records=max_records).items():
            if blocks:
                assert sum(map(len, got)) <= max_records + max(map(len, got))  # records counted, not blocks
                columns = RecordColumns.concat(got)
                got = [columns.record(i) for i in range(len(columns))]
            out += [(tp.partition, r.offset, r.key, r.value or b"") for r in got]
        polls += 1
        assert polls < 1_000
    consumer.close()
    return sorted(out)


def test_blocks_read_what_a_plain_consumer_reads(settings, fresh_topic):
    topic = fresh_topic(PARTITIONS)
    sent = _produce(settings.bootstrap_servers, topic)
    start = {p: 0 for p in range(PARTITIONS)}
    plain = _read(settings.bootstrap_servers, topic, start, blocks=False)
    assert len(plain) == sent
    assert _read(settings.bootstrap_servers, topic, start, blocks=True) == plain
    middle = {p: 1 + 37 * (p + 1) for p in range(PARTITIONS)}  # inside a batch, most likely a compressed one
    from_middle = _read(settings.bootstrap_servers, topic, middle, blocks=True, max_records=50)
    assert from_middle == [r for r in plain if r[1] >= middle[r[0]]]
