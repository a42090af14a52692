"""Which partition Kafka's default partitioner gives a key: murmur2, as the Java client.

kafka-python's murmur2 is pure Python, ~5 µs a key; the items stage routes every event it
forwards by customer and by category, most customers for the first time. ``partitions_of``
hashes a poll's keys in one compiled pass; ``tests/unit/test_partitioning.py`` checks it
against kafka-python's own function.
"""

from __future__ import annotations

import numpy as np
from kafka.partitioner.default import murmur2
from numba import njit

from streaming.wire.packed import concatenated

SEED, M = 0x9747B28C, 0x5BD1E995
MASK = 0xFFFFFFFF


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner sends ``key`` to."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@njit(cache=True)
def _murmur2_partitions(data, ends, partitions):
    m, mask = np.uint64(M), np.uint64(MASK)
    s8, s13, s15, s16, s24 = np.uint64(8), np.uint64(13), np.uint64(15), np.uint64(16), np.uint64(24)
    out = np.empty(ends.shape[0], np.int64)
    start = 0
    for j in range(ends.shape[0]):
        stop = ends[j]
        length = stop - start
        h = (np.uint64(SEED) ^ np.uint64(length)) & mask
        for i in range(start, start + (length // 4) * 4, 4):
            k = np.uint64(data[i]) | (np.uint64(data[i + 1]) << s8) | (np.uint64(data[i + 2]) << s16)
            k = k | (np.uint64(data[i + 3]) << s24)
            k = (k * m) & mask
            k ^= k >> s24
            k = (k * m) & mask
            h = ((h * m) & mask) ^ k
        tail = start + (length // 4) * 4
        extra = length % 4
        if extra >= 3:
            h ^= np.uint64(data[tail + 2]) << s16
        if extra >= 2:
            h ^= np.uint64(data[tail + 1]) << s8
        if extra >= 1:
            h ^= np.uint64(data[tail])
            h = (h * m) & mask
        h ^= h >> s13
        h = (h * m) & mask
        h ^= h >> s15
        out[j] = np.int64(h & np.uint64(0x7FFFFFFF)) % partitions
        start = stop
    return out


def partitions_of(keys: list[str], partitions: int) -> np.ndarray:
    """``partition_of`` for many keys at once."""
    return _murmur2_partitions(*concatenated([key.encode() for key in keys]), partitions)
