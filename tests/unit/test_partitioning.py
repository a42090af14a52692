"""The compiled murmur2 routes every key where Kafka's default partitioner does."""

from __future__ import annotations

import random

from streaming.wire.partitioning import partition_of, partitions_of


def test_partitions_equal_kafka_pythons_murmur2():
    rnd = random.Random(1)
    keys = ["", "a", "ab", "abc", "abcd", "abcde", "cust_0140108", "dress", "é💃", *(
        "".join(rnd.choice("abcxyz0189_-é") for _ in range(rnd.randrange(0, 40))) for _ in range(2_000)
    )]  # fmt: skip
    for partitions in (1, 3, 6, 7):
        assert partitions_of(keys, partitions).tolist() == [partition_of(k, partitions) for k in keys]
