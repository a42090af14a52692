"""The window engine's inner loop, compiled (numba): events in, feature-row sums out.

Pure Python spent ~60 µs an item event here (a heap push per window, a dict per row, an expiry
row per window later), more than Kafka's client costs to deliver it. The rules are exactly
``windows.py``'s (read its docstring); this module only lays the state out as flat arrays:

- entities are integers (``windows.WindowEngine`` maps keys to them); per entity ``ent`` holds
  [newest node, oldest node, last row time, next tick time, last booking time, first event
  time, the node last inserted], ``heads[e, w]`` the oldest node inside window w (-1: none)
  and ``sums[e, w, m]``;
- events still inside the longest window are nodes of a per-entity linked list in time order
  (``node_time``, ``node_meas``, ``node_next``, ``node_prev``); a node that leaves the longest
  window goes back to a free list threaded through ``node_next``. A late event is linked in by
  walking from the entity's last insert (its "finger"): partitions interleave in runs, so the
  next late event lands next to the previous one, not a year of nodes back from the newest;
- timers are a binary heap ordered by (time, kind, entity): expiries before ticks at the
  same instant, as in the Python engine;
- rows go to preallocated output arrays; when they are full the kernel returns early and
  the caller grows them and calls again with the same arguments: every step is resumable;
- an entity with nothing left (``idle_entities``) is dropped by the caller, which renumbers the
  rest with ``compact_nodes``: state follows the entities active within the longest window.

``scalars`` holds the engine's counters: CLOCK, LATE, HEAP (timers in the heap), FREE (first
free node), USED (nodes ever handed out), OUT (rows written).
"""

from __future__ import annotations

import numpy as np
from numba import njit

CLOCK, LATE, HEAP, FREE, USED, OUT = range(6)
TAIL, OLDEST, LAST_ROW, NEXT_TICK, LAST_EVENT, FIRST_EVENT, FINGER = range(7)
ENTITY_FIELDS = 7
EXPIRY, TICK = 0, 1
NONE = -1


@njit(cache=True, inline="always")
def _before(ht, hk, he, a, b):
    if ht[a] != ht[b]:
        return ht[a] < ht[b]
    if hk[a] != hk[b]:
        return hk[a] < hk[b]
    return he[a] < he[b]


@njit(cache=True, inline="always")
def _swap(ht, hk, he, a, b):
    ht[a], ht[b] = ht[b], ht[a]
    hk[a], hk[b] = hk[b], hk[a]
    he[a], he[b] = he[b], he[a]


@njit(cache=True)
def _push(scalars, ht, hk, he, at, kind, entity):
    i = scalars[HEAP]
    scalars[HEAP] = i + 1
    ht[i], hk[i], he[i] = at, kind, entity
    while i > 0:
        parent = (i - 1) >> 1
        if _before(ht, hk, he, i, parent):
            _swap(ht, hk, he, i, parent)
            i = parent
        else:
            break


@njit(cache=True)
def _pop(scalars, ht, hk, he):
    """Remove the earliest timer (the caller has read it at index 0)."""
    n = scalars[HEAP] - 1
    scalars[HEAP] = n
    ht[0], hk[0], he[0] = ht[n], hk[n], he[n]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        child = left
        if left + 1 < n and _before(ht, hk, he, left + 1, left):
            child = left + 1
        if _before(ht, hk, he, child, i):
            _swap(ht, hk, he, i, child)
            i = child
        else:
            break


@njit(cache=True)
def _emit(scalars, ent, sums, e, at, out_ent, out_at, out_sums, out_last, out_first):
    if at <= ent[e, LAST_ROW]:
        at = ent[e, LAST_ROW] + 1
    ent[e, LAST_ROW] = at
    r = scalars[OUT]
    scalars[OUT] = r + 1
    out_ent[r] = e
    out_at[r] = at
    out_sums[r] = sums[e]
    out_last[r] = ent[e, LAST_EVENT]
    out_first[r] = ent[e, FIRST_EVENT]


@njit(cache=True)
def _expire(scalars, windows, ent, heads, sums, node_time, node_meas, node_next, node_prev, e, at):
    """Drop from each window the events at or before ``at - window``; True if any left."""
    changed = False
    for w in range(windows.shape[0]):
        head = heads[e, w]
        cutoff = at - windows[w]
        while head != NONE and node_time[head] <= cutoff:
            sums[e, w] -= node_meas[head]
            head = node_next[head]
            changed = True
        heads[e, w] = head
    # Nodes before the longest window's head have left every window: free them.
    keep = heads[e, windows.shape[0] - 1]
    node = ent[e, OLDEST]
    if node != keep:
        ent[e, FINGER] = NONE  # it may be among the nodes freed
    while node != keep:
        following = node_next[node]
        node_next[node] = scalars[FREE]
        scalars[FREE] = node
        node = following
    ent[e, OLDEST] = keep
    if keep == NONE:
        ent[e, TAIL] = NONE
    else:
        node_prev[keep] = NONE
    return changed


@njit(cache=True)
def _schedule_tick(scalars, ht, hk, he, ent, e, after, tick):
    ent[e, NEXT_TICK] = (after // tick + 1) * tick
    _push(scalars, ht, hk, he, ent[e, NEXT_TICK], TICK, e)


@njit(cache=True)
def _insert(scalars, windows, tick, ent, heads, sums, node_time, node_meas, node_next, node_prev,
            ht, hk, he, e, t, meas):  # fmt: skip
    clock = scalars[CLOCK]
    longest = windows.shape[0] - 1
    if t > clock - windows[longest]:  # inside at least the longest window: keep it as a node
        node = scalars[FREE]
        if node != NONE:
            scalars[FREE] = node_next[node]
        else:
            node = scalars[USED]
            scalars[USED] = node + 1
        node_time[node] = t
        node_meas[node] = meas
        # Link it in time order (ties after): after the last node at or before t. Nearly
        # always the newest; otherwise near the previous insert.
        after = ent[e, TAIL]
        if after != NONE and node_time[after] > t and ent[e, FINGER] != NONE:
            after = ent[e, FINGER]
            while node_next[after] != NONE and node_time[node_next[after]] <= t:
                after = node_next[after]
        while after != NONE and node_time[after] > t:
            after = node_prev[after]
        ent[e, FINGER] = node
        node_prev[node] = after
        if after == NONE:
            node_next[node] = ent[e, OLDEST]
            ent[e, OLDEST] = node
        else:
            node_next[node] = node_next[after]
            node_next[after] = node
        if node_next[node] == NONE:
            ent[e, TAIL] = node
        else:
            node_prev[node_next[node]] = node
        for w in range(windows.shape[0]):
            if t > clock - windows[w]:
                sums[e, w] += meas
                _push(scalars, ht, hk, he, t + windows[w], EXPIRY, e)
                head = heads[e, w]
                if head == NONE or node_time[head] > t:
                    heads[e, w] = node
    if meas[0] > 0 and t > ent[e, LAST_EVENT]:
        ent[e, LAST_EVENT] = t
    if tick > 0 and ent[e, NEXT_TICK] < 0:
        _schedule_tick(scalars, ht, hk, he, ent, e, clock, tick)
    if ent[e, FIRST_EVENT] < 0 or t < ent[e, FIRST_EVENT]:
        ent[e, FIRST_EVENT] = t


@njit(cache=True)
def advance(scalars, windows, tick, ent, heads, sums, node_time, node_meas, node_next, node_prev,
            ht, hk, he, to, out_ent, out_at, out_sums, out_last, out_first):  # fmt: skip
    """Fire every timer up to ``to`` in order, then move the clock; False if the output filled."""
    capacity = out_ent.shape[0]
    longest = windows.shape[0] - 1
    while scalars[HEAP] > 0 and ht[0] <= to:
        if scalars[OUT] >= capacity:
            return False
        at, kind, e = ht[0], hk[0], he[0]
        _pop(scalars, ht, hk, he)
        if kind == EXPIRY:
            if _expire(scalars, windows, ent, heads, sums, node_time, node_meas, node_next, node_prev, e, at):
                _emit(scalars, ent, sums, e, at, out_ent, out_at, out_sums, out_last, out_first)
        else:
            _expire(scalars, windows, ent, heads, sums, node_time, node_meas, node_next, node_prev, e, at)
            if ent[e, LAST_ROW] < at:
                _emit(scalars, ent, sums, e, at, out_ent, out_at, out_sums, out_last, out_first)
            ent[e, NEXT_TICK] = -1
            if heads[e, longest] != NONE:
                _schedule_tick(scalars, ht, hk, he, ent, e, at, tick)
    if to > scalars[CLOCK]:
        scalars[CLOCK] = to
    return True


@njit(cache=True)
def apply(scalars, windows, tick, ent, heads, sums, node_time, node_meas, node_next, node_prev,
          ht, hk, he, entities, times, measures, start, out_ent, out_at, out_sums, out_last, out_first):  # fmt: skip
    """Apply events ``start:`` in order (an entity of -1 only moves the clock); return the index
    of the first one not applied (the output filled: call again from there)."""
    capacity = out_ent.shape[0]
    for i in range(start, entities.shape[0]):
        t = times[i]
        if t > scalars[CLOCK]:
            if scalars[HEAP] > 0 and ht[0] <= t:
                if not advance(scalars, windows, tick, ent, heads, sums, node_time, node_meas, node_next, node_prev,
                               ht, hk, he, t, out_ent, out_at, out_sums, out_last, out_first):  # fmt: skip
                    return i
            else:
                scalars[CLOCK] = t
        e = entities[i]
        if e < 0:  # only moves the clock (an event this view does not count)
            continue
        if scalars[OUT] >= capacity:
            return i
        if t < scalars[CLOCK]:
            scalars[LATE] += 1
        _insert(scalars, windows, tick, ent, heads, sums, node_time, node_meas, node_next, node_prev,
                ht, hk, he, e, t, measures[i])  # fmt: skip
        _emit(scalars, ent, sums, e, scalars[CLOCK], out_ent, out_at, out_sums, out_last, out_first)
    return entities.shape[0]


@njit(cache=True)
def expire_now(scalars, windows, tick, ent, heads, sums, node_time, node_meas, node_next, node_prev, ht, hk, he, e):
    """Bring one entity's sums to the clock (for reading a value between timers)."""
    _expire(scalars, windows, ent, heads, sums, node_time, node_meas, node_next, node_prev, e, scalars[CLOCK])


@njit(cache=True)
def compact_nodes(keep, ent, heads, node_time, node_meas, node_next):
    """The nodes of the entities ``keep`` (in order), renumbered from 0: (time, measures, next,
    prev, ent, heads) for a new engine holding only those entities."""
    total = 0
    for k in range(keep.shape[0]):
        node = ent[keep[k], OLDEST]
        while node != NONE:
            total += 1
            node = node_next[node]
    new_time = np.empty(total, np.int64)
    new_meas = np.empty((total, node_meas.shape[1]), np.int64)
    new_next = np.full(total, NONE, np.int64)
    new_prev = np.full(total, NONE, np.int64)
    new_ent = ent[keep].copy()
    new_ent[:, FINGER] = NONE
    new_heads = np.full((keep.shape[0], heads.shape[1]), NONE, np.int64)
    n = 0
    for k in range(keep.shape[0]):
        e = keep[k]
        node = ent[e, OLDEST]
        new_ent[k, OLDEST] = NONE
        new_ent[k, TAIL] = NONE
        previous = NONE
        while node != NONE:
            new_time[n] = node_time[node]
            new_meas[n] = node_meas[node]
            new_prev[n] = previous
            if previous == NONE:
                new_ent[k, OLDEST] = n
            else:
                new_next[previous] = n
            for w in range(heads.shape[1]):
                if heads[e, w] == node:
                    new_heads[k, w] = n
            previous = n
            n += 1
            node = node_next[node]
        new_ent[k, TAIL] = previous
    return new_time, new_meas, new_next, new_prev, new_ent, new_heads


@njit(cache=True)
def idle_entities(scalars, ent, n, he):
    """Which of the first ``n`` entities have nothing left: no event in any window, no timer
    pending, and a last row before the clock. A new entity's first row is at the clock or
    later, so one dropped now and booked again writes exactly the rows it would have kept."""
    timers = np.zeros(n, np.int64)
    for i in range(scalars[HEAP]):
        timers[he[i]] += 1
    clock = scalars[CLOCK]
    idle = np.zeros(n, np.bool_)
    for e in range(n):
        idle[e] = ent[e, OLDEST] == NONE and ent[e, NEXT_TICK] < 0 and ent[e, LAST_ROW] < clock and timers[e] == 0
    return idle


@njit(cache=True)
def free_nodes(scalars, node_next):
    """Nodes on the free list: slots of events that left every window, waiting for reuse."""
    n, node = 0, scalars[FREE]
    while node != NONE:
        n += 1
        node = node_next[node]
    return n


# -- seen event ids (windows.Deduplicator) ----------------------------------------------------
# An open-addressing table of int64 ids (64 bits of murmur3: already well mixed) and the time
# each may be forgotten, EMPTY in a free slot: 16 bytes a slot where a dict of Python ints
# takes ~140 bytes an id. Linear probing from a Fibonacci hash of the id.
EMPTY = np.iinfo(np.int64).min
_FIBONACCI = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer


@njit(cache=True, inline="always")
def _home(event_id, mask):
    return ((event_id * _FIBONACCI) >> 32) & mask


@njit(cache=True)
def seen_add(ids, forget, event_ids, forget_at, fresh):
    """For each id in order: new (remembered until its ``forget_at``) or seen; the number new.
    The table has room for every id of the call (the caller keeps it at most 70% full)."""
    mask = ids.shape[0] - 1
    added = 0
    for i in range(event_ids.shape[0]):
        x = event_ids[i]
        j = _home(x, mask)
        while True:
            if forget[j] == EMPTY:
                ids[j] = x
                forget[j] = forget_at[i]
                fresh[i] = True
                added += 1
                break
            if ids[j] == x:
                fresh[i] = False
                break
            j = (j + 1) & mask
    return added


@njit(cache=True)
def seen_rebuild(ids, forget, new_ids, new_forget, keep_from):
    """Every id with a forget time at or after ``keep_from`` into the empty table ``new_*``;
    the soonest forget time kept (EMPTY: none)."""
    mask = new_ids.shape[0] - 1
    soonest = EMPTY
    for i in range(ids.shape[0]):
        f = forget[i]
        if f == EMPTY or f < keep_from:
            continue
        j = _home(ids[i], mask)
        while new_forget[j] != EMPTY:
            j = (j + 1) & mask
        new_ids[j] = ids[i]
        new_forget[j] = f
        if soonest == EMPTY or f < soonest:
            soonest = f
    return soonest
