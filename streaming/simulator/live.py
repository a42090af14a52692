"""Live booking events from the simulated platform, continuing its history at wall-clock time.

Live events are not seeded by the history's seed alone: their times are the wall clock's and
their booking ids carry a run id, so two live runs never collide in a consumer's de-duplication.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from kafka import KafkaProducer

from streaming.events import BookingCancelled, BookingCreated, encode
from streaming.simulator.booking_events import booking_cancelled, booking_created
from streaming.simulator.world import World

RECENT_WINDOW_S = 30 * 86400.0


class LiveSimulator:
    def __init__(
        self,
        world: World,
        recent_bookings: pd.DataFrame | None = None,
        seed: int | None = None,
        cancel_delay_s: tuple[float, float] = (1.0, 20.0),
    ):
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.run_id = (
            uuid.UUID(int=int(self.rng.integers(0, 2**63))).hex[-12:] if seed is not None else uuid.uuid4().hex[:12]
        )
        self.cancel_delay_s = cancel_delay_s
        self._counter = 0
        self._weights: dict[int, np.ndarray] = {}
        self._item_index = {item: i for i, item in enumerate(world.items["item_id"])}
        # Recent booking times per item, for the popularity input of the true price.
        self._recent: dict[int, deque[float]] = {}
        if recent_bookings is not None and len(recent_bookings):
            times = pd.to_datetime(recent_bookings["event_time"], utc=True)
            cutoff = times.max() - pd.Timedelta(seconds=RECENT_WINDOW_S)
            tail = recent_bookings[times > cutoff].sort_values("event_time")
            for item, t in zip(tail["item_id"], pd.to_datetime(tail["event_time"], utc=True), strict=True):
                if item in self._item_index:
                    self._recent.setdefault(self._item_index[item], deque()).append(t.timestamp())
        self._pending_cancels: list[tuple[float, BookingCancelled]] = []

    def _item_weights(self, start_day: int) -> np.ndarray:
        """Cumulative demand over items for rentals starting on ``start_day``."""
        if start_day not in self._weights:
            n = len(self.world.items)
            lam = self.world.intensity(np.arange(n), np.full(n, start_day))
            self._weights[start_day] = np.cumsum(lam)
        return self._weights[start_day]

    def _recent_count(self, item: int, now_s: float) -> int:
        times = self._recent.setdefault(item, deque())
        while times and times[0] <= now_s - RECENT_WINDOW_S:
            times.popleft()
        return len(times)

    def batch(self, now: datetime, n: int) -> list[BookingCreated | BookingCancelled]:
        """``n`` new bookings made at ``now``, plus any cancellations that have come due."""
        events: list[BookingCreated | BookingCancelled] = [
            e for due, e in self._pending_cancels if due <= now.timestamp()
        ]
        self._pending_cancels = [(due, e) for due, e in self._pending_cancels if due > now.timestamp()]
        if n <= 0:
            return events
        world, rng = self.world, self.rng
        today = pd.Timestamp(now).tz_convert("UTC").normalize()
        day0 = int((today - world.config.start) / pd.Timedelta(days=1))
        lead = world.sample_lead_days(n, rng)
        item_idx = np.empty(n, dtype=np.int64)
        for start_day in np.unique(day0 + lead):
            mask = (day0 + lead) == start_day
            cum = self._item_weights(int(start_day))
            item_idx[mask] = np.searchsorted(cum, rng.random(int(mask.sum())) * cum[-1], side="right")
        item_idx = item_idx.clip(0, len(world.items) - 1)
        now_s = now.timestamp()
        recent = np.array([self._recent_count(int(i), now_s) for i in item_idx])
        start = [(today + pd.Timedelta(days=int(d))).date() for d in lead]
        frame = world.book(item_idx, lead, pd.Timestamp(now), start, recent, rng)
        delays = rng.uniform(*self.cancel_delay_s, size=n)
        for k, row in enumerate(frame.itertuples(index=False)):
            self._counter += 1
            booking_id = f"live_{self.run_id}_{self._counter:09d}"
            self._recent.setdefault(int(item_idx[k]), deque()).append(now_s)
            events.append(
                booking_created(
                    booking_id,
                    row.item_id,
                    row.customer_id,
                    now,
                    row.rental_start,
                    row.rental_days,
                    row.price_per_day,
                    world.config.currency,
                )
            )
            if row.cancelled:
                due = now + timedelta(seconds=float(delays[k]))
                self._pending_cancels.append(
                    (due.timestamp(), booking_cancelled(booking_id, row.item_id, row.customer_id, due))
                )
        return events


def stream_live(
    producer: KafkaProducer,
    topic: str,
    simulator: LiveSimulator,
    rate: float,
    duration_s: float | None = None,
    max_events: int | None = None,
    on_sent: Callable[[int], None] | None = None,
    tick_s: float = 0.05,
) -> dict[str, int]:
    """New bookings at ``rate`` per second, stamped with the wall clock, until time or count is up."""
    if duration_s is None and max_events is None:
        raise ValueError("stream_live needs a duration or a maximum number of events")
    counts = {"booking_created": 0, "booking_cancelled": 0}
    start = time.perf_counter()
    made = 0
    while True:
        elapsed = time.perf_counter() - start
        if (duration_s is not None and elapsed >= duration_s) or (max_events is not None and made >= max_events):
            break
        due = int(rate * elapsed) - made
        if max_events is not None:
            due = min(due, max_events - made)
        for event in simulator.batch(datetime.now(UTC), max(due, 0)):
            producer.send(topic, key=event.item_id, value=encode(event))
            counts[event.event_type] += 1
        made += max(due, 0)
        if on_sent and due > 0:
            on_sent(due)
        time.sleep(tick_s)
    producer.flush()
    return counts
