"""Time-correct sliding windows over events, written once for the live consumer and the backfill.

A value at time t counts the events in (t - window, t]. Every moment a value changes gets a
row: when an event arrives and when an event leaves a window (its expiry, t + window), so a
point-in-time read at any instant sees the exact value and windows decay with no new events.

Ordering rules, the same for the live consumer and the batch backfill:

- the engine has one clock per instance (per Kafka partition in the consumer): the largest
  event time seen, or a later wall-clock time given by ``advance`` when the stream is idle;
- before an event is applied, every expiry up to its time fires, in time order, expiries
  before events at the same instant;
- an event older than the clock (late: another partition or an idle tick moved the clock on)
  is applied at the clock: it counts in each window it still falls in, expires at its own
  time + window, and its row is stamped with the clock. Rows already written are never
  rewritten, so an as-of read before the event arrived does not see it, as the live service
  did not;
- a row's timestamp is strictly later than the entity's previous row (bumped by 1 µs when
  needed), so an online store that keeps only newer rows never drops an update;
- an event id seen before (a redelivery or a replay) changes nothing (``Deduplicator``).

Measures are integers (counts, pence, days), so sums are exact whatever the order of adds and
removals, and the consumer and the backfill agree to the last digit.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

US = 1_000_000
DAY_US = 86_400 * US
EXPIRY, TICK = 0, 1  # timer kinds; at the same instant expiries fire first


@dataclass(frozen=True)
class Spec:
    """One entity type's windows: their lengths and how many integer measures each event carries."""

    name: str
    windows_us: tuple[int, ...]  # ascending; the last is the longest
    n_measures: int
    # Builds a feature row from (entity key, row time, sums per window, entity state).
    row: Callable[[Hashable, int, list[list[int]], EntityState], dict]
    # A row at every multiple of this period (UTC midnights for a day) while the entity has
    # events in its longest window: for values that change with the calendar, not only with
    # events (a long-run level over the history seen so far).
    tick_us: int | None = None

    def __post_init__(self):
        if list(self.windows_us) != sorted(self.windows_us):
            raise ValueError(f"{self.name}: windows must be ascending")


@dataclass(slots=True)
class EntityState:
    times: list[int] = field(default_factory=list)  # event times still in the longest window
    measures: list[tuple[int, ...]] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)  # per window: index of its oldest event
    sums: list[list[int]] = field(default_factory=list)
    last_row_us: int = -1
    next_tick_us: int = -1  # the calendar row already scheduled, if any
    last_event_us: int = -1  # latest event whose first measure (its count) is positive: a booking
    first_event_us: int = -1  # earliest event time ever (how much history a long-run level has)

    def __reduce__(self):
        # A flat tuple pickles about 2.5x faster than the dataclass's default slot state, and
        # checkpoints pickle every entity of a partition.
        return EntityState, (self.times, self.measures, self.heads, self.sums, self.last_row_us,
                             self.next_tick_us, self.last_event_us, self.first_event_us)  # fmt: skip


class WindowEngine:
    """Windowed sums for every entity of one spec, with the expiry timer that decays them."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.clock_us = -1
        self.entities: dict[Hashable, EntityState] = {}
        self._timers: list[tuple[int, int, Hashable]] = []  # (time, EXPIRY or TICK, entity)
        self.rows: list[dict] = []
        self.late = 0

    # -- public -------------------------------------------------------------------------------
    def apply(self, key: Hashable, time_us: int, measures: tuple[int, ...]) -> None:
        """Apply one event and write the entity's new row."""
        if time_us > self.clock_us:
            timers = self._timers
            if timers and timers[0][0] <= time_us:
                self.advance(time_us)
            else:  # nothing fires on the way: just move the clock
                self.clock_us = time_us
        elif time_us < self.clock_us:
            self.late += 1
        state = self.entities.get(key)
        if state is None:
            state = self.entities[key] = self._new_state()
        self._insert(key, state, time_us, measures)
        self._emit(key, state, self.clock_us)

    def advance(self, to_us: int) -> None:
        """Move the clock to ``to_us`` (never back), firing every expiry on the way in order."""
        timers = self._timers
        while timers and timers[0][0] <= to_us:
            at, kind, key = heapq.heappop(timers)
            state = self.entities[key]
            if kind == EXPIRY:
                if self._expire(state, at):
                    self._emit(key, state, at)
            else:
                self._expire(state, at)
                if state.last_row_us < at:
                    self._emit(key, state, at)
                state.next_tick_us = -1
                if state.heads[-1] < len(state.times):
                    self._schedule_tick(key, state, at)
        if to_us > self.clock_us:
            self.clock_us = to_us

    def state(self, keep: Callable[[Hashable], bool] | None = None) -> dict:
        """Everything needed to resume (picklable); ``keep`` selects a subset of entities."""
        if keep is None:
            return {"clock_us": self.clock_us, "entities": self.entities, "timers": self._timers, "late": self.late}
        entities = {k: v for k, v in self.entities.items() if keep(k)}
        timers = [t for t in self._timers if t[2] in entities]
        heapq.heapify(timers)
        return {"clock_us": self.clock_us, "entities": entities, "timers": timers, "late": self.late}

    def restore(self, state: dict) -> None:
        self.clock_us, self.entities, self._timers, self.late = (
            state["clock_us"], state["entities"], state["timers"], state["late"],
        )  # fmt: skip

    def take_rows(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows

    def values(self, key: Hashable) -> dict | None:
        """The entity's row as of the clock (None if never seen)."""
        state = self.entities.get(key)
        if state is None:
            return None
        self._expire(state, self.clock_us)
        return self.spec.row(key, self.clock_us, state.sums, state)

    # -- internals ----------------------------------------------------------------------------
    def _new_state(self) -> EntityState:
        n = len(self.spec.windows_us)
        return EntityState(heads=[0] * n, sums=[[0] * self.spec.n_measures for _ in range(n)])

    def _insert(self, key: Hashable, state: EntityState, time_us: int, measures: tuple[int, ...]) -> None:
        if not state.times or time_us >= state.times[-1]:
            state.times.append(time_us)
            state.measures.append(measures)
        else:  # out of order within the entity: keep times sorted (ties go after)
            at = bisect_right(state.times, time_us)
            state.times.insert(at, time_us)
            state.measures.insert(at, measures)
        # An event inside a window lands at or after that window's head; one outside lands
        # at or before it, so the head steps past it.
        clock, timers, all_sums = self.clock_us, self._timers, state.sums
        for w, window in enumerate(self.spec.windows_us):
            if time_us > clock - window:
                sums = all_sums[w]
                for m, value in enumerate(measures):
                    sums[m] += value
                heapq.heappush(timers, (time_us + window, EXPIRY, key))
            else:  # already outside this window: step the head past it
                state.heads[w] += 1
        if measures[0] > 0:
            state.last_event_us = max(state.last_event_us, time_us)
        if self.spec.tick_us and state.next_tick_us < 0:
            self._schedule_tick(key, state, self.clock_us)
        if state.first_event_us < 0 or time_us < state.first_event_us:
            state.first_event_us = time_us

    def _schedule_tick(self, key: Hashable, state: EntityState, after_us: int) -> None:
        tick = self.spec.tick_us
        state.next_tick_us = (after_us // tick + 1) * tick
        heapq.heappush(self._timers, (state.next_tick_us, TICK, key))

    def _expire(self, state: EntityState, at_us: int) -> bool:
        """Drop from each window the events at or before ``at - window``; True if any left."""
        changed = False
        times, heads = state.times, state.heads
        n = len(times)
        for w, window in enumerate(self.spec.windows_us):
            head = heads[w]
            cutoff = at_us - window
            if head < n and times[head] <= cutoff:
                sums = state.sums[w]
                while head < n and times[head] <= cutoff:
                    for m, value in enumerate(state.measures[head]):
                        sums[m] -= value
                    head += 1
                heads[w] = head
                changed = True
        drop = heads[-1]
        if drop == n and n:  # nothing left in any window: keep no history (checkpoints stay small)
            times.clear(), state.measures.clear()
            state.heads = [0] * len(heads)
        elif drop > 64 and drop * 2 > n:  # compact what left the longest window
            del times[:drop], state.measures[:drop]
            state.heads = [h - drop for h in heads]
        return changed

    def _emit(self, key: Hashable, state: EntityState, at_us: int) -> None:
        if at_us <= state.last_row_us:
            at_us = state.last_row_us + 1
        state.last_row_us = at_us
        self.rows.append(self.spec.row(key, at_us, state.sums, state))


class Deduplicator:
    """Remembers event ids for a horizon, so a redelivery or a replay counts nothing twice."""

    def __init__(self, horizon_us: int):
        self.horizon_us = horizon_us
        self._expiry: dict[Hashable, int] = {}
        self._order: deque[tuple[int, Hashable]] = deque()
        self.duplicates = 0

    def first_time(self, event_id: Hashable, time_us: int) -> bool:
        if event_id in self._expiry:
            self.duplicates += 1
            return False
        forget_at = time_us + self.horizon_us
        self._expiry[event_id] = forget_at
        self._order.append((forget_at, event_id))
        return True

    def forget_before(self, now_us: int) -> None:
        """Drop ids whose events are older than the horizon (insertion order is nearly time order)."""
        order, expiry = self._order, self._expiry
        while order and order[0][0] < now_us:
            _, event_id = order.popleft()
            if expiry.get(event_id, now_us) < now_us:
                del expiry[event_id]

    def __len__(self) -> int:
        return len(self._expiry)

    def state(self) -> dict:
        return {"expiry": self._expiry, "order": self._order, "duplicates": self.duplicates}

    def restore(self, state: dict) -> None:
        self._expiry, self._order, self.duplicates = state["expiry"], state["order"], state["duplicates"]
