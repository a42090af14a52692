"""The join of quotes with their outcomes: pure rules, no I/O (the consumer feeds it, ``state``
saves it).

A quote at event time t, for item i by customer c, has the outcome window [t, t + W) with
W = ``monitor_outcome_window_s``. Its outcome is read from the bookings of i with an event time
in that window: ``booked`` if c made one (the first by event time, ties by event id, gives
``booking_id``, ``booked_at`` and ``paid_per_day``), ``booked_any`` if anyone did.

The rules:

- **Watermark.** Per source (quotes, bookings) the newest event time seen; the watermark is the
  smallest of those, less ``monitor_allowed_lateness_s``, and never moves back. A source silent
  for ``monitor_idle_s`` (wall time) stops holding it back; when both are silent it moves on
  with the wall clock from the newest event, so the last windows of the day close at night.
  It moves only at ``close`` (each checkpoint), so every decision between two checkpoints
  sees the same watermark.
- **Final.** A quote's row is final at the first ``close`` whose watermark has reached its
  window's end; it is written to the outcomes table then and never changed. A booking that
  arrives later (**late outcome**) does not reopen it; it still counts for rows not yet final.
- **Missing outcome.** A quote whose window closed with no booking is final with
  ``booked=false`` and ``booked_any=false``.
- **Duplicates.** A quote is kept once per ``request_id`` and a booking event once per
  ``event_id``: the first wins, a repeat is counted and changes nothing.
- **Cancellations.** A cancelled booking still counts as booked (the customer accepted the
  price); ``cancelled`` says its cancellation was seen before the row became final.
- **Late quotes.** A quote whose window had already closed when it arrived is joined at the
  next ``close`` with the bookings kept, and marked ``late_quote``. Bookings, cancellations
  and request ids are kept while their event time is within ``monitor_retention_s`` before the
  oldest window still open (the horizon); a quote older than the horizon cannot be told from a
  repeat whose id was forgotten, so it is refused (the consumer puts it in the rejected table).
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from monitoring.log.records import quote_date

SOURCES = ("quotes", "bookings")


@dataclass(frozen=True)
class Rules:
    window_us: int
    lateness_us: int
    retention_us: int
    idle_s: float

    @classmethod
    def from_settings(cls, settings) -> Rules:
        return cls(int(settings.monitor_outcome_window_s * 1e6), int(settings.monitor_allowed_lateness_s * 1e6),
                   int(settings.monitor_retention_s * 1e6), settings.monitor_idle_s)  # fmt: skip


class Booking(NamedTuple):
    event_us: int
    event_id: str
    booking_id: str
    customer_id: str
    price_per_day: float


class Watermark:
    """Event time known to be complete, but for ``lateness``: see the module's rules."""

    def __init__(self, rules: Rules, now: float, value: int | None = None, newest: dict | None = None):
        self.rules = rules
        self.value = value
        self.newest: dict[str, int | None] = {source: None for source in SOURCES} | (newest or {})
        self.heard = dict.fromkeys(SOURCES, now)  # wall (monotonic) time of each source's last record

    def observe(self, source: str, event_us: int, now: float) -> None:
        newest = self.newest[source]
        if newest is None or event_us > newest:
            self.newest[source] = event_us
        self.heard[source] = now

    def advance(self, now: float) -> int | None:
        live = {s for s in SOURCES if now - self.heard[s] < self.rules.idle_s}
        if any(self.newest[s] is None for s in live):  # a source not heard from yet, and not idle yet
            return self.value
        if live:
            candidate = min(self.newest[s] for s in live) - self.rules.lateness_us
        else:
            known = [self.newest[s] for s in SOURCES if self.newest[s] is not None]
            if not known:
                return self.value
            silent_us = int((now - max(self.heard.values())) * 1e6)
            candidate = max(known) + silent_us - self.rules.lateness_us
        if self.value is None or candidate > self.value:
            self.value = candidate
        return self.value


class Ledger:
    """Open quotes, the bookings and cancellations they may meet, the ids already seen."""

    def __init__(self, rules: Rules, now: float, watermark: int | None = None, newest: dict | None = None):
        self.rules = rules
        self.watermark = Watermark(rules, now, watermark, newest)
        self.open: dict[str, tuple] = {}  # request id -> quote key (records.QUOTE_KEY_FIELDS)
        self.late: set[str] = set()  # open quotes that arrived after their window closed
        self._closing: list[tuple[int, str]] = []  # heap of (window end, request id)
        self.seen: dict[str, int] = {}  # request id -> quoted at
        self.seen_order: deque[tuple[int, str]] = deque()
        self.bookings: dict[str, list[Booking]] = {}  # item id -> its bookings
        self.booking_events: dict[str, int] = {}  # event id -> event time
        self.event_order: deque[tuple[int, str, str]] = deque()  # (event time, event id, item id)
        self.cancels: dict[str, int] = {}  # booking id -> when it was cancelled
        self.counters: Counter[str] = Counter()

    @property
    def horizon(self) -> int | None:
        """Event times before this can no longer meet a quote that is accepted."""
        wm = self.watermark.value
        return None if wm is None else wm - self.rules.window_us - self.rules.retention_us

    # -- input ----------------------------------------------------------------------------------
    def add_quote(self, key: tuple, now: float) -> str:
        """``key``: ``records.quote_key``. Returns "new", "duplicate" or "too_late"."""
        request_id, quoted_us = key[0], key[1]
        if request_id in self.seen:
            self.counters["quotes_duplicate"] += 1
            return "duplicate"
        horizon = self.horizon
        if horizon is not None and quoted_us < horizon:
            self.counters["quotes_too_late"] += 1
            return "too_late"
        self.watermark.observe("quotes", quoted_us, now)
        self.seen[request_id] = quoted_us
        self.seen_order.append((quoted_us, request_id))
        self.open_quote(key)
        end = quoted_us + self.rules.window_us
        if self.watermark.value is not None and end <= self.watermark.value:
            self.late.add(request_id)
            self.counters["quotes_late"] += 1
        self.counters["quotes"] += 1
        return "new"

    def open_quote(self, key: tuple) -> None:
        self.open[key[0]] = key
        heapq.heappush(self._closing, (key[1] + self.rules.window_us, key[0]))

    def add_booking(self, booking: Booking, item_id: str, now: float) -> str:
        """Returns "new", "duplicate" or "stale" (older than the horizon: it can meet no quote)."""
        if booking.event_id in self.booking_events:
            self.counters["bookings_duplicate"] += 1
            return "duplicate"
        self.watermark.observe("bookings", booking.event_us, now)
        horizon = self.horizon
        if horizon is not None and booking.event_us < horizon:
            self.counters["bookings_stale"] += 1
            return "stale"
        if self.watermark.value is not None and booking.event_us < self.watermark.value:
            self.counters["bookings_late"] += 1  # rows already final have not seen it
        self.booking_events[booking.event_id] = booking.event_us
        self.event_order.append((booking.event_us, booking.event_id, item_id))
        self.bookings.setdefault(item_id, []).append(booking)
        self.counters["bookings"] += 1
        return "new"

    def add_cancel(self, event_id: str, booking_id: str, event_us: int, now: float) -> str:
        if event_id in self.booking_events:
            self.counters["cancellations_duplicate"] += 1
            return "duplicate"
        self.watermark.observe("bookings", event_us, now)
        horizon = self.horizon
        if horizon is not None and event_us < horizon:
            self.counters["cancellations_stale"] += 1
            return "stale"
        self.booking_events[event_id] = event_us
        self.event_order.append((event_us, event_id, ""))
        self.cancels.setdefault(booking_id, event_us)
        self.counters["cancellations"] += 1
        return "new"

    # -- output ---------------------------------------------------------------------------------
    def close(self, now: float) -> list[dict[str, Any]]:
        """Advance the watermark; return the outcome rows that became final, then forget what
        fell behind the horizon."""
        wm = self.watermark.advance(now)
        rows: list[dict[str, Any]] = []
        if wm is None:
            return rows
        while self._closing and self._closing[0][0] <= wm:
            _, request_id = heapq.heappop(self._closing)
            key = self.open.pop(request_id)
            late = request_id in self.late
            self.late.discard(request_id)
            rows.append(self.outcome(key, wm, late))
        self.counters["outcomes"] += len(rows)
        self._forget(self.horizon)
        return rows

    def outcome(self, key: tuple, closed_us: int, late: bool) -> dict[str, Any]:
        request_id, quoted_us, item_id, customer_id, category, model_version, rental_days, price = key
        end = quoted_us + self.rules.window_us
        window = [b for b in self.bookings.get(item_id, ()) if quoted_us <= b.event_us < end]
        first_any = min(window, default=None)
        mine = min((b for b in window if customer_id is not None and b.customer_id == customer_id), default=None)
        return {
            "request_id": request_id, "quoted_at": quoted_us, "quote_date": quote_date(quoted_us),
            "item_id": item_id, "customer_id": customer_id, "category": category, "model_version": model_version,
            "rental_days": rental_days, "price_per_day": price, "window_end": end, "closed_at": closed_us,
            "late_quote": late, "booked": mine is not None,
            "booking_id": mine.booking_id if mine else None, "booked_at": mine.event_us if mine else None,
            "paid_per_day": mine.price_per_day if mine else None,
            "cancelled": mine is not None and mine.booking_id in self.cancels,
            "booked_any": first_any is not None,
            "paid_any_per_day": first_any.price_per_day if first_any else None,
            "bookings_in_window": len({b.booking_id for b in window}),
        }  # fmt: skip

    def _forget(self, horizon: int | None) -> None:
        if horizon is None:
            return
        seen_order = self.seen_order
        while seen_order and seen_order[0][0] < horizon:
            self.seen.pop(seen_order.popleft()[1], None)
        order, touched = self.event_order, set()
        while order and order[0][0] < horizon:
            _, event_id, item_id = order.popleft()
            self.booking_events.pop(event_id, None)
            touched.add(item_id)
        for item_id in touched - {""}:
            kept = [b for b in self.bookings.get(item_id, ()) if b.event_us >= horizon]
            if kept:
                self.bookings[item_id] = kept
            else:
                self.bookings.pop(item_id, None)
        if "" in touched:
            self.cancels = {b: t for b, t in self.cancels.items() if t >= horizon}
