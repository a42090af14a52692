"""The event-time bounds of the items stage (``streaming.consumer.event_time``)."""

import numpy as np

from streaming.consumer.event_time import rejected
from streaming.features.pipeline import DEDUP_HORIZON_US

US = 1_000_000
DAY = 86_400 * US
NOW = 20_000 * DAY


def _times(*days: float) -> np.ndarray:
    return np.array([int(d * DAY) for d in days], np.int64)


def test_an_event_past_the_skew_is_rejected_and_one_inside_it_is_not():
    out = rejected(np.array([NOW + 299 * US, NOW + 301 * US], np.int64), NOW - DAY, NOW, skew_s=300)
    assert [i for i, _ in out] == [1]
    assert "301 s ahead" in out[0][1] and "RENTAL_STREAM_MAX_FUTURE_SKEW_S (300 s)" in out[0][1]


def test_a_zero_skew_accepts_exactly_now():
    assert [i for i, _ in rejected(np.array([NOW, NOW + 1], np.int64), -1, NOW, skew_s=0)] == [1]


def test_a_rejected_future_event_does_not_move_the_clock_for_the_events_after_it():
    # Were the event dated 10 years ahead applied, everything after it would be "too late".
    times = _times(19_999, 20_000 + 3_650, 19_999.5)
    assert [i for i, _ in rejected(times, 19_998 * DAY, NOW, skew_s=300)] == [1]


def test_too_late_is_measured_against_the_clock_the_events_before_it_leave():
    clock = 19_000 * DAY
    times = np.array([clock - DEDUP_HORIZON_US + 1, 19_990 * DAY, 19_990 * DAY - DEDUP_HORIZON_US], np.int64)
    out = rejected(times, clock, NOW, skew_s=300)
    assert [i for i, _ in out] == [2]  # the first is inside the horizon of the clock it met
    assert "older than every window" in out[0][1]


def test_an_empty_partition_and_an_empty_batch_reject_nothing():
    assert rejected(_times(0.5, 1), -1, NOW, skew_s=300) == []
    assert rejected(np.zeros(0, np.int64), -1, NOW, skew_s=300) == []
