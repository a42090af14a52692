"""The DLQ's rate in a window: dead letters per booking, counted from the topics' offsets.

``offsets_for_times`` gives, per partition, the first offset at or after a time, so the
records between two times are a subtraction: no record is read. The times are the records'
Kafka timestamps (when they were produced), which for a live stream are within moments of
their event times. Kafka unreachable: no figure (the check is then not judged).
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from monitoring.checks.windows import Window
from rental.connections import kafka_options
from rental.settings import Settings

log = logging.getLogger(__name__)


def _count(consumer: KafkaConsumer, topic: str, start_ms: int, end_ms: int) -> int:
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not partitions:
        return 0
    ends = consumer.end_offsets(partitions)
    first = consumer.offsets_for_times(dict.fromkeys(partitions, start_ms))
    last = consumer.offsets_for_times(dict.fromkeys(partitions, end_ms))
    total = 0
    for tp in partitions:
        low = first[tp].offset if first[tp] is not None else ends[tp]
        high = last[tp].offset if last[tp] is not None else ends[tp]
        total += max(0, high - low)
    return total


def dlq_rate(settings: Settings, window: Window) -> float | None:
    try:
        consumer = KafkaConsumer(
            **kafka_options(settings), client_id="rental-monitor-checks", request_timeout_ms=10_000
        )
    except (KafkaError, OSError) as exc:
        log.warning("dead-letter rate not measured: Kafka unavailable (%s)", exc)
        return None
    try:
        start_ms, end_ms = int(window.start.timestamp() * 1000), int(window.end.timestamp() * 1000)
        letters = _count(consumer, settings.topic_bookings_dlq, start_ms, end_ms)
        bookings = _count(consumer, settings.topic_bookings, start_ms, end_ms)
    except (KafkaError, OSError) as exc:
        log.warning("dead-letter rate not measured: %s", exc)
        return None
    finally:
        consumer.close()
    return None if bookings + letters == 0 else letters / (bookings + letters)
