"""Which event times a stage accepts: the bounds that keep one event from breaking a partition.

A partition's clock is the largest event time it has applied, and windows are read at that
clock: one booking dated years ahead would move it for good, and every later event would then be
"late" and count in no window. So the items stage, the head of the pipeline, accepts an event
only if its time lies in

    (clock - DEDUP_HORIZON, now + RENTAL_STREAM_MAX_FUTURE_SKEW_S]

where ``now`` is the wall clock (``RENTAL_STREAM_NOW`` in replays). Anything else is a dead
letter with its reason, so no single event can move a clock ahead of the wall clock by more than
the skew:

- too far ahead: the producer's clock is wrong, or the field is not the event's time;
- too late: older than the longest window (365 days) and a day, it counts in no window, and its
  event id may already be forgotten by the de-duplication, so a redelivery could not be told
  from a new event.

An event inside the bounds but older than the clock is applied at the clock (the rule for late
events in ``streaming.features.windows``): it counts in each window it still falls in. The
downstream stages read only events the items stage accepted.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from streaming.features.pipeline import DEDUP_HORIZON_US

US = 1_000_000


def rejected(time_us: np.ndarray, clock_us: int, now_us: int, skew_s: float) -> list[tuple[int, str]]:
    """(index, reason) of each event time outside the bounds, in order. An event is too late
    against the clock as the events before it in the batch leave it."""
    latest = now_us + int(skew_s * US)
    ahead = time_us > latest
    clock = np.maximum.accumulate(np.concatenate([[clock_us], np.where(ahead, clock_us, time_us)]))[:-1]
    late = ~ahead & (time_us <= clock - DEDUP_HORIZON_US)
    out = []
    for i in np.flatnonzero(ahead | late).tolist():
        at = int(time_us[i])
        if ahead[i]:
            out.append((i, f"event_time: {_iso(at)} is {(at - now_us) / US:,.0f} s ahead of the stream's clock "
                           f"{_iso(now_us)}, more than RENTAL_STREAM_MAX_FUTURE_SKEW_S ({skew_s:g} s)"))  # fmt: skip
        else:
            out.append((i, f"event_time: {_iso(at)} is older than every window and the de-duplication horizon "
                           f"({DEDUP_HORIZON_US // (86_400 * US)} days) behind its partition's clock "
                           f"{_iso(int(clock[i]))}"))  # fmt: skip
    return out


def _iso(time_us: int) -> str:
    return datetime.fromtimestamp(time_us / US, UTC).isoformat()
