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

Memory follows what is live, not what was ever seen: an entity with nothing left in any window
(its last expiry fired, its last row written before the clock) is dropped, within an eighth of
its longest window, and starts from zeros if it comes back, exactly as it would have gone on.
A spec whose rows read an entity's first or latest event time keeps every entity instead:
those times outlive the windows (items and categories, bounded by the catalogue). Event ids
are forgotten past their horizon.

Measures are integers (counts, pence, days), so sums are exact whatever the order of adds and
removals, and the consumer and the backfill agree to the last digit.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from streaming.features import window_kernel as k

US = 1_000_000
DAY_US = 86_400 * US
STATE_FORMAT = 2  # arrays (window_kernel); format 1 pickled one Python object per entity
OUT_ROWS = 65_536  # rows the kernel writes before handing them back


@dataclass(frozen=True)
class Rows:
    """Rows the engine wrote, as columns: the entity keys, row times, and for each row the
    sums per window and measure, the entity's latest booking and its first event (-1: none)."""

    keys: np.ndarray  # object
    attribute: np.ndarray  # int64: the spec's ``attribute`` of each row's entity (0 without one)
    at_us: np.ndarray  # int64
    sums: np.ndarray  # int64 [rows, windows, measures]
    last_event_us: np.ndarray
    first_event_us: np.ndarray


@dataclass(frozen=True)
class Spec:
    """One entity type's windows: their lengths, how many integer measures each event carries,
    and the feature columns their sums make."""

    name: str
    key: str  # the entity column of the rows
    windows_us: tuple[int, ...]  # ascending; the last is the longest
    n_measures: int
    # Feature columns (numpy or Arrow arrays, beside the key and "event_timestamp") of rows.
    columns: Callable[[Rows], dict[str, np.ndarray | pa.Array]]
    # A row at every multiple of this period (UTC midnights for a day) while the entity has
    # events in its longest window: for values that change with the calendar, not only with
    # events (a long-run level over the history seen so far).
    tick_us: int | None = None
    # A fixed integer per entity that columns need (an item's units), looked up once per entity.
    attribute: Callable[[Hashable], int] | None = None
    # Whether columns read ``Rows.first_event_us`` or ``last_event_us``. Those outlive the
    # windows, so such a spec keeps every entity; otherwise one with empty windows is dropped.
    event_times: bool = True

    def __post_init__(self):
        if list(self.windows_us) != sorted(self.windows_us):
            raise ValueError(f"{self.name}: windows must be ascending")


def _grown(array: np.ndarray, rows: int, fill: int | None) -> np.ndarray:
    """``array`` in ``rows`` rows, the new ones ``fill``. Zero-filled room comes from calloc:
    its pages are mapped only once written, so unused room costs no memory."""
    if fill == 0:
        out = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    else:
        out = np.full((rows, *array.shape[1:]), fill, dtype=array.dtype)
    out[: len(array)] = array
    return out


def _room(needed: int, have: int, least: int) -> int:
    """A grown array's rows: half as many again, not double (amortised the same, and a year of
    events held in windows leaves a third less unused room)."""
    return max(needed, have + have // 2, least)


class WindowEngine:
    """Windowed sums for every entity of one spec, with the expiry timer that decays them.

    A thin owner of ``window_kernel``'s arrays: it maps entity keys to integers, keeps the
    arrays large enough for the next call, turns the kernel's output into Arrow tables, and
    drops entities with nothing left (``drop_idle``) so they do not pile up."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self._windows = np.asarray(spec.windows_us, dtype=np.int64)
        self._tick = spec.tick_us or 0
        w, m = len(spec.windows_us), spec.n_measures
        self._scalars = np.array([-1, 0, 0, k.NONE, 0, 0], dtype=np.int64)
        self._keys: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._keys_np, self._attributes, self._keys_filled = np.empty(0, dtype=object), np.zeros(0, np.int64), 0
        self._ent = np.full((0, k.ENTITY_FIELDS), -1, np.int64)
        self._heads = np.full((0, w), k.NONE, np.int64)
        self._sums = np.zeros((0, w, m), np.int64)
        self._node_time = np.zeros(0, np.int64)
        self._node_meas = np.zeros((0, m), np.int64)
        self._node_next = np.full(0, k.NONE, np.int64)
        self._node_prev = np.full(0, k.NONE, np.int64)
        self._heap = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._out = (
            np.zeros(OUT_ROWS, np.int64), np.zeros(OUT_ROWS, np.int64), np.zeros((OUT_ROWS, w, m), np.int64),
            np.zeros(OUT_ROWS, np.int64), np.zeros(OUT_ROWS, np.int64),
        )  # fmt: skip
        self._taken: list[tuple[np.ndarray, ...]] = []
        self._sweep_every = max(spec.windows_us) // 8
        self._swept_at = self.clock_us

    # -- public -------------------------------------------------------------------------------
    @property
    def clock_us(self) -> int:
        return int(self._scalars[k.CLOCK])

    @property
    def late(self) -> int:
        return int(self._scalars[k.LATE])

    @property
    def entities(self) -> dict[Hashable, int]:
        """The entities held (a dropped one is not among them)."""
        return self._index

    def apply(self, key: Hashable, time_us: int, measures: tuple[int, ...]) -> None:
        """Apply one event and write the entity's new row."""
        self.apply_many([key], np.array([time_us], np.int64), np.array([measures], np.int64))

    def apply_many(self, keys: Sequence[Hashable], times_us: np.ndarray, measures: np.ndarray) -> None:
        """Apply events in order, each exactly as ``apply`` would; a key of None only moves the
        clock, as ``advance`` would."""
        n = len(keys)
        if n == 0:
            return
        index, known = self._index, self._keys
        entities = np.empty(n, np.int64)
        for i, key in enumerate(keys):
            if key is None:  # moves the clock only
                entities[i] = -1
                continue
            e = index.get(key)
            if e is None:
                e = index[key] = len(known)
                known.append(key)
            entities[i] = e
        self._reserve(n)
        times_us = np.ascontiguousarray(times_us, np.int64)
        measures = np.ascontiguousarray(measures, np.int64).reshape(n, self.spec.n_measures)
        start = 0
        while start < n:
            start = k.apply(*self._kernel_state(), entities, times_us, measures, start, *self._out)
            if start < n:
                self._drain()

    def advance(self, to_us: int) -> None:
        """Move the clock to ``to_us`` (never back), firing every expiry on the way in order."""
        while not k.advance(*self._kernel_state(), int(to_us), *self._out):
            self._drain()

    def take_table(self) -> pa.Table:
        """Every row written since the last take, in the order written."""
        self._drain()
        chunks, self._taken = self._taken, []
        w, m = len(self.spec.windows_us), self.spec.n_measures
        if chunks:
            ent, at, sums, last, first = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
        else:
            ent, at, last, first = (np.zeros(0, np.int64) for _ in range(4))
            sums = np.zeros((0, w, m), np.int64)
        keys, attributes = self._entity_columns()
        table = self._table(Rows(keys[ent], attributes[ent], at, sums, last, first))
        if self.clock_us - self._swept_at >= self._sweep_every:
            self.drop_idle()
        return table

    def drop_idle(self) -> int:
        """Drop the entities with nothing left in any window (no event, no timer, its last row
        before the clock) and renumber the rest densely, events and timers with them; the
        number dropped (none for a spec whose rows read event times). Renumbering costs
        O(entities), so it waits until a quarter of them (or half the event slots) are free.
        ``take_table`` calls it each time the clock has moved an eighth of the longest window:
        an engine holds at most a third more entities than were live at its last check."""
        self._swept_at = self.clock_us
        if self.spec.event_times:
            return 0
        n = len(self._keys)
        idle = k.idle_entities(self._scalars, self._ent, n, self._heap[2])
        out_ent = self._out[0][: int(self._scalars[k.OUT])]
        for written in (*(chunk[0] for chunk in self._taken), out_ent):  # rows not taken keep theirs
            idle[written] = False
        dropped = int(idle.sum())
        used = int(self._scalars[k.USED])
        free = k.free_nodes(self._scalars, self._node_next)
        if 4 * dropped < max(n, 1) and 2 * free <= used:  # renumbering costs O(entities): for a quarter
            return 0
        kept = np.flatnonzero(~idle)
        node_time, node_meas, node_next, node_prev, ent, heads = k.compact_nodes(
            kept, self._ent[:n], self._heads, self._node_time, self._node_meas, self._node_next
        )
        renumber = np.full(n, -1, np.int64)
        renumber[kept] = np.arange(len(kept))
        # New arrays throughout, never rewritten in place: a state taken before stays valid.
        live, nodes = len(kept), len(node_time)
        entity_room, node_room = max(1024, live + live // 4), max(4096, nodes + nodes // 4)
        self._ent, self._heads = _grown(ent, entity_room, -1), _grown(heads, entity_room, k.NONE)
        self._sums = _grown(self._sums[kept], entity_room, 0)
        self._node_time, self._node_meas = _grown(node_time, node_room, 0), _grown(node_meas, node_room, 0)
        self._node_next, self._node_prev = _grown(node_next, node_room, k.NONE), _grown(node_prev, node_room, k.NONE)
        n_heap = int(self._scalars[k.HEAP])
        ht, hk, he = (a[:n_heap] for a in self._heap)  # renumbering keeps the order: still a heap
        heap_room = max(4096, 2 * n_heap)
        self._heap = (_grown(ht, heap_room, 0), _grown(hk, heap_room, 0), _grown(renumber[he], heap_room, 0))
        self._scalars[k.FREE], self._scalars[k.USED] = k.NONE, nodes
        for chunk in self._taken:
            chunk[0][:] = renumber[chunk[0]]
        out_ent[:] = renumber[out_ent]
        keys_np, attributes = self._entity_columns()
        self._keys_np, self._attributes = (
            _grown(keys_np[kept], entity_room, None),
            _grown(attributes[kept], entity_room, 0),
        )
        self._keys = self._keys_np[:live].tolist()
        self._keys_filled = live
        self._index = dict(zip(self._keys, range(live), strict=True))
        return dropped

    def footprint(self) -> dict[str, int]:
        """What the engine holds: entities, events inside a window, timers, array bytes."""
        arrays = (self._ent, self._heads, self._sums, self._node_time, self._node_meas, self._node_next,
                  self._node_prev, *self._heap, self._keys_np, self._attributes)  # fmt: skip
        return {
            "entities": len(self._keys),
            "events": int(self._scalars[k.USED]) - k.free_nodes(self._scalars, self._node_next),
            "timers": int(self._scalars[k.HEAP]),
            "array_bytes": sum(a.nbytes for a in arrays),
        }

    @property
    def pending(self) -> int:
        """Rows written and not taken yet."""
        return sum(len(chunk[0]) for chunk in self._taken) + int(self._scalars[k.OUT])

    def take_rows(self) -> list[dict]:
        """``take_table`` as dicts (times as integer microseconds): for tests and small uses."""
        return self.take_table().to_pylist()

    def values(self, key: Hashable) -> dict | None:
        """The entity's row as of the clock (None if never seen, or dropped); writes no row."""
        e = self._index.get(key)
        if e is None:
            return None
        k.expire_now(*self._kernel_state(), e)
        keys, attributes = self._entity_columns()
        ent = self._ent[e]
        rows = Rows(keys[e : e + 1], attributes[e : e + 1], np.array([self.clock_us]), self._sums[e : e + 1].copy(),
                    ent[k.LAST_EVENT : k.LAST_EVENT + 1].copy(), ent[k.FIRST_EVENT : k.FIRST_EVENT + 1].copy())  # fmt: skip
        return self._table(rows).to_pylist()[0]

    def state(self, keep: Callable[[Hashable], bool] | None = None) -> dict:
        """Everything needed to resume: numeric arrays, ints and the entity keys (a checkpoint
        saves them as data, ``checkpoint``); ``keep`` selects a subset of entities.

        Without ``keep`` the state holds views of the live arrays, not copies: a checkpoint
        writes it at once or in a forked child, which sees them as they were at the fork."""
        n_heap, entities = int(self._scalars[k.HEAP]), len(self._keys)
        timers = tuple(a[:n_heap] for a in self._heap)
        if keep is None:
            used = int(self._scalars[k.USED])
            keys, free = self._keys, int(self._scalars[k.FREE])
            ent, heads, sums = self._ent[:entities], self._heads[:entities], self._sums[:entities]
            nodes = (self._node_time[:used], self._node_meas[:used], self._node_next[:used], self._node_prev[:used])
        else:
            kept = np.array([e for e, key in enumerate(self._keys) if keep(key)], dtype=np.int64)
            keys, free, sums = [self._keys[e] for e in kept], k.NONE, self._sums[kept]
            *nodes, ent, heads = k.compact_nodes(kept, self._ent[:entities], self._heads, self._node_time,
                                                 self._node_meas, self._node_next)  # fmt: skip
            renumber = np.full(entities, -1, np.int64)
            renumber[kept] = np.arange(len(kept))
            ht, hk, he = timers
            mine = renumber[he] >= 0
            ht, hk, he = ht[mine], hk[mine], renumber[he[mine]]
            order = np.lexsort((he, hk, ht))  # sorted by (time, kind, entity): a valid heap
            timers = (ht[order], hk[order], he[order])
        return {
            "format": STATE_FORMAT, "clock_us": self.clock_us, "late": self.late, "entities": keys,
            "ent": ent, "heads": heads, "sums": sums, "nodes": tuple(nodes), "free": free, "timers": timers,
        }  # fmt: skip

    def restore(self, state: dict) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"saved window state has format {state.get('format', 1)}, this engine reads {STATE_FORMAT}: "
                "rebuild it (rental features backfill, or a new consumer group)"
            )
        self._keys = list(state["entities"])
        self._index = {key: e for e, key in enumerate(self._keys)}
        self._keys_np, self._attributes, self._keys_filled = np.empty(0, dtype=object), np.zeros(0, np.int64), 0
        self._ent, self._heads, self._sums = state["ent"].copy(), state["heads"].copy(), state["sums"].copy()
        self._node_time, self._node_meas, self._node_next, self._node_prev = (a.copy() for a in state["nodes"])
        self._heap = tuple(a.copy() for a in state["timers"])
        n_nodes, n_heap = len(self._node_time), len(self._heap[0])
        self._scalars = np.array([state["clock_us"], state["late"], n_heap, state["free"], n_nodes, 0], dtype=np.int64)
        self._taken = []
        self._swept_at = self.clock_us

    # -- internals ----------------------------------------------------------------------------
    def _table(self, rows: Rows) -> pa.Table:
        return pa.table({self.spec.key: rows.keys, "event_timestamp": rows.at_us, **self.spec.columns(rows)})

    def _kernel_state(self) -> tuple:
        return (self._scalars, self._windows, self._tick, self._ent, self._heads, self._sums, self._node_time,
                self._node_meas, self._node_next, self._node_prev, *self._heap)  # fmt: skip

    def _reserve(self, events: int) -> None:
        """Room for ``events`` more events: entities, nodes and timers never run out mid-call."""
        entities = len(self._keys)
        if entities > len(self._ent):
            size = _room(entities, len(self._ent), 1024)
            self._ent = _grown(self._ent, size, -1)
            self._heads = _grown(self._heads, size, k.NONE)
            self._sums = _grown(self._sums, size, 0)
        nodes = int(self._scalars[k.USED]) + events
        if nodes > len(self._node_time):
            size = _room(nodes, len(self._node_time), 4096)
            self._node_time = _grown(self._node_time, size, 0)
            self._node_meas = _grown(self._node_meas, size, 0)
            self._node_next = _grown(self._node_next, size, k.NONE)
            self._node_prev = _grown(self._node_prev, size, k.NONE)
        # Each event pushes a timer per window; ticks add at most one per entity.
        timers = int(self._scalars[k.HEAP]) + events * len(self.spec.windows_us) + entities
        if timers > len(self._heap[0]):
            size = _room(timers, len(self._heap[0]), 4096)
            self._heap = tuple(_grown(a, size, 0) for a in self._heap)

    def _entity_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Each entity's key (object) and the spec's attribute of it, indexed by entity: grown,
        not rebuilt, as keys arrive."""
        known, filled = len(self._keys), self._keys_filled
        if known > len(self._keys_np):
            size = max(known, 2 * len(self._keys_np), 1024)
            keys, attributes = np.empty(size, dtype=object), np.zeros(size, np.int64)
            keys[:filled], attributes[:filled] = self._keys_np[:filled], self._attributes[:filled]
            self._keys_np, self._attributes = keys, attributes
        if known > filled:
            new = self._keys[filled:]
            self._keys_np[filled:known] = new
            if self.spec.attribute is not None:
                self._attributes[filled:known] = [self.spec.attribute(key) for key in new]
            self._keys_filled = known
        return self._keys_np, self._attributes

    def _drain(self) -> None:
        n = int(self._scalars[k.OUT])
        if n:
            self._taken.append(tuple(a[:n].copy() for a in self._out))
            self._scalars[k.OUT] = 0


class Deduplicator:
    """Remembers event ids for a horizon, so a redelivery or a replay counts nothing twice.

    Ids are integers (``event_batch.event_key``) in ``window_kernel``'s open-addressing table,
    16 bytes a slot, at most 70% full: a year of ids at a million bookings is ~34 MB where a
    dict took ~150. Forgetting rebuilds the table from the ids still inside the horizon, so
    the memory of forgotten ids is given back; it runs only when the soonest id to forget has
    passed (the pipeline asks at most once a day of event time). A checkpoint saves the ids as
    two arrays."""

    _MIN_SLOTS = 1024

    def __init__(self, horizon_us: int):
        self.horizon_us = horizon_us
        self.duplicates = 0
        self._clear(self._MIN_SLOTS)

    def _clear(self, slots: int) -> None:
        self._ids = np.zeros(slots, np.int64)
        self._forget = np.full(slots, k.EMPTY, np.int64)
        self._count = 0
        self._soonest = k.EMPTY  # the earliest forget time held (EMPTY: none)

    def first_time(self, event_id: int, time_us: int) -> bool:
        return bool(self.first_time_many(np.array([event_id], np.int64), np.array([time_us], np.int64))[0])

    def first_time_many(self, event_ids: np.ndarray, times_us: np.ndarray) -> np.ndarray:
        """For each id in order, whether it is new, remembering the new ones (an id repeated
        within the call is new only the first time); a duplicate changes nothing."""
        event_ids = np.ascontiguousarray(event_ids, np.int64)
        forget_at = np.ascontiguousarray(times_us, np.int64) + self.horizon_us
        n = len(event_ids)
        if (self._count + n) * 10 > len(self._ids) * 7:
            self._rebuild(k.EMPTY + 1, self._count + n)
        fresh = np.empty(n, np.bool_)
        added = k.seen_add(self._ids, self._forget, event_ids, forget_at, fresh)
        if added:
            soonest = int(forget_at[fresh].min())
            if self._soonest == k.EMPTY or soonest < self._soonest:
                self._soonest = soonest
        self._count += added
        self.duplicates += n - added
        return fresh

    def forget_before(self, now_us: int) -> None:
        """Drop ids whose events are older than the horizon (forget time before ``now_us``)."""
        if self._soonest != k.EMPTY and self._soonest < now_us:
            held = self._count
            self._rebuild(now_us, held)
            if self._count * 4 < held:  # most were forgotten: a smaller table
                self._rebuild(now_us, self._count)

    def _rebuild(self, keep_from: int, room_for: int) -> None:
        """The ids forgotten at or after ``keep_from`` in a table sized for ``room_for``."""
        slots = self._MIN_SLOTS
        while slots * 7 < room_for * 10:
            slots *= 2
        ids, forget = self._ids, self._forget
        self._clear(slots)
        self._soonest = k.seen_rebuild(ids, forget, self._ids, self._forget, keep_from)
        self._count = int(np.count_nonzero(self._forget != k.EMPTY))

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._ids.nbytes + self._forget.nbytes

    def state(self) -> dict:
        """The ids in the order they are forgotten (then by id)."""
        held = self._forget != k.EMPTY
        ids, forget = self._ids[held], self._forget[held]
        order = np.lexsort((ids, forget))
        return {"ids": ids[order], "forget_at": forget[order], "duplicates": self.duplicates}

    def restore(self, state: dict) -> None:
        ids = np.ascontiguousarray(state["ids"], np.int64)
        forget = np.ascontiguousarray(state["forget_at"], np.int64)
        self._clear(self._MIN_SLOTS)
        self._rebuild(k.EMPTY + 1, len(ids))
        fresh = np.empty(len(ids), np.bool_)
        self._count = k.seen_add(self._ids, self._forget, ids, forget, fresh)
        self._soonest = int(forget.min()) if len(forget) else k.EMPTY
        self.duplicates = state["duplicates"]


def warm_up() -> None:
    """Load (or compile, the first time) every window kernel now, not on the first event: a
    consumer's first poll would otherwise wait a second or more for it."""
    spec = Spec("warm-up", "key", (DAY_US, 2 * DAY_US), 1, lambda rows: {}, tick_us=DAY_US, event_times=False)
    engine = WindowEngine(spec)
    engine.apply_many(["a", None, "a"], np.array([DAY_US, 2 * DAY_US, 0]), np.ones((3, 1), np.int64))
    engine.advance(5 * DAY_US)
    engine.values("a")
    WindowEngine(spec).restore(engine.state(keep=lambda key: True))
    engine.advance(10 * DAY_US)
    engine.drop_idle()
    engine.take_table()
