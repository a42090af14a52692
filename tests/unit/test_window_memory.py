"""Bounded memory: entities with nothing left in any window are dropped, event slots are
reused, event ids are forgotten past their horizon, and none of it changes a single row."""

import numpy as np
import pytest

from streaming.events import CREATED
from streaming.features.pipeline import DEDUP_HORIZON_US, Catalogue, FeaturePipeline
from streaming.features.windows import DAY_US, Deduplicator, Spec, WindowEngine

WEEK, MONTH = 7 * DAY_US, 30 * DAY_US


def _columns(rows):
    """Sums and both event times, as the item and category views read them."""
    return {"week": rows.sums[:, 0, 0], "month": rows.sums[:, 1, 0], "amount": rows.sums[:, 1, 1],
            "last": rows.last_event_us, "first": rows.first_event_us, "units": rows.attribute}  # fmt: skip


def _sums_only(rows):
    return {"week": rows.sums[:, 0, 0], "month": rows.sums[:, -1, 0], "amount": rows.sums[:, -1, 1]}


SPECS = {
    "one window": Spec("whole", "key", (MONTH,), 2, _sums_only, event_times=False),
    "two windows, a daily tick": Spec(
        "ticked", "key", (WEEK, MONTH), 2, _sums_only, tick_us=DAY_US, attribute=len, event_times=False
    ),
}
EVENT_TIMES = Spec("kept", "key", (WEEK, MONTH), 2, _columns, tick_us=DAY_US, attribute=len)


def _sorted(table):
    """Rows by entity and time. Timers of one instant fire in entity order, which dropping
    renumbers, so rows of different entities may interleave otherwise; an entity's own rows
    keep their order (their stamps strictly grow)."""
    return table.sort_by([("key", "ascending"), ("event_timestamp", "ascending")])


class _NeverDrops(WindowEngine):
    """The same engine keeping every entity it ever saw: what the dropping one must equal."""

    def drop_idle(self) -> int:
        return 0


def _stream(seed: int, days: int = 3 * 365):
    """Batches of (keys, times, measures) over ``days``: a population that turns over every
    ten days, late events up to 40 days back, repeats at one instant, cancellations (a zero
    first measure), idle gaps (a None key moves the clock), and an old entity that comes back
    every 100 days, long after its windows emptied."""
    rng = np.random.default_rng(seed)
    for day in range(days):
        n = int(rng.integers(5, 40))
        base = day // 10
        keys = [f"k{base + int(j)}" for j in rng.integers(0, 12, n)]
        times = day * DAY_US + np.sort(rng.integers(0, DAY_US, n))
        late = rng.random(n) < 0.1
        times[late] -= rng.integers(0, 40 * DAY_US, int(late.sum()))
        times[1:][rng.random(n - 1) < 0.05] = times[0]  # some at one microsecond
        measures = np.column_stack([(rng.random(n) > 0.2).astype(np.int64), rng.integers(1, 10_000, n)])
        if day % 100 == 50:
            keys[-1] = "returning"
        if day % 37 == 0:
            keys[0] = None
        yield keys, times.astype(np.int64), measures


@pytest.mark.parametrize("kind", list(SPECS))
def test_dropping_idle_entities_changes_no_row_and_keeps_state_bounded(kind):
    spec = SPECS[kind]
    dropping, keeping = WindowEngine(spec), _NeverDrops(spec)
    sizes, seen = [], set()
    for day, (keys, times, measures) in enumerate(_stream(seed=11)):
        seen.update(key for key in keys if key is not None)
        for engine in (dropping, keeping):
            engine.apply_many(keys, times, measures)
            if day % 45 == 44:  # an idle stretch: windows decay with no events
                engine.advance(int(times.max()) + 20 * DAY_US)
        ours, theirs = dropping.take_table(), keeping.take_table()
        assert _sorted(ours).equals(_sorted(theirs)), f"day {day}: rows differ"
        sizes.append(dropping.footprint())
    for key in {key for key in keys if key is not None}:  # the last day's: still live
        assert dropping.values(key) == keeping.values(key)
    assert dropping.values("k3") is None and keeping.values("k3")["month"] == 0  # dropped: its windows were empty

    live = [s["entities"] for s in sizes]
    # Twelve keys at a time, each active about 50 days (ten as the population's, 40 late),
    # dropped at most an eighth of the longest window after: never near the 100+ ever seen.
    assert max(live[365:]) <= 40 < len(seen) / 2, (max(live), len(seen))
    assert keeping.footprint()["entities"] == len(seen)
    late_bytes, early_bytes = max(s["array_bytes"] for s in sizes[730:]), max(s["array_bytes"] for s in sizes[:365])
    assert late_bytes <= early_bytes  # a year on, no larger than in the first year
    assert max(s["events"] for s in sizes[365:]) < keeping.footprint()["events"] + 2_000


def test_a_spec_whose_rows_read_event_times_keeps_every_entity():
    """An item's last booking outlives its windows: such entities are never dropped."""
    engine, seen = WindowEngine(EVENT_TIMES), set()
    for keys, times, measures in _stream(seed=2, days=200):
        seen.update(key for key in keys if key is not None)
        engine.apply_many(keys, times, measures)
        engine.take_table()
    assert engine.drop_idle() == 0 and engine.footprint()["entities"] == len(seen)
    assert engine.values("k0")["last"] >= 0 and engine.values("k0")["month"] == 0


def test_a_dropped_entity_booked_again_starts_from_zeros_and_its_rows_still_land_after_the_old_ones():
    engine = WindowEngine(SPECS["one window"])
    engine.apply("a", 0, (1, 500))
    engine.apply("b", 0, (1, 1))
    engine.advance(MONTH)  # "a" leaves its window: its last row is at MONTH, the clock's instant
    last_row = engine.take_table().to_pylist()[-1]["event_timestamp"]
    assert engine.drop_idle() == 0  # a new row at the clock could collide with that last one
    engine.advance(MONTH + 1)
    assert engine.drop_idle() == 2 and engine.values("a") is None and engine.footprint()["entities"] == 0
    engine.apply("a", MONTH + 1, (1, 7))
    row = engine.take_table().to_pylist()[-1]
    assert (row["month"], row["amount"]) == (1, 7) and row["event_timestamp"] > last_row


def test_a_state_taken_after_dropping_is_smaller_and_goes_on_exactly():
    spec = SPECS["two windows, a daily tick"]
    original, reference = WindowEngine(spec), _NeverDrops(spec)
    stream = list(_stream(seed=5, days=400))
    for keys, times, measures in stream[:300]:
        for engine in (original, reference):
            engine.apply_many(keys, times, measures)
            engine.take_table()
    original.drop_idle()
    state = original.state()
    assert len(state["entities"]) * 2 < len(reference.state()["entities"])
    assert len(state["nodes"][0]) <= len(reference.state()["nodes"][0])
    restored = WindowEngine(spec)
    restored.restore(state)
    for keys, times, measures in stream[300:]:
        for engine in (restored, reference):
            engine.apply_many(keys, times, measures)
        assert _sorted(restored.take_table()).equals(_sorted(reference.take_table()))


def test_event_slots_of_expired_events_are_reused_not_grown():
    engine = WindowEngine(SPECS["one window"])
    for day in range(400):  # one entity, ten events a day: about 300 inside its month at once
        engine.apply_many(["a"] * 10, day * DAY_US + np.arange(10, dtype=np.int64), np.ones((10, 2), np.int64))
        engine.take_table()
        if day == 100:
            capacity = len(engine._node_time)
    assert len(engine._node_time) == capacity and engine.footprint()["events"] == 300


def test_deduplicator_forgets_while_idle_and_gives_the_memory_back():
    dedup = Deduplicator(horizon_us=DAY_US)
    ids = np.arange(200_000, dtype=np.int64) * 7919
    dedup.first_time_many(ids, np.zeros(len(ids), np.int64))
    full = dedup.nbytes
    assert full <= 200_000 * 16 / 0.35  # 16 bytes a slot, at least 35% full
    dedup.forget_before(DAY_US // 2)  # none is past its horizon yet
    assert len(dedup) == len(ids) and dedup.nbytes == full
    dedup.forget_before(2 * DAY_US)  # no new ids arrive: nothing else would free the room
    assert len(dedup) == 0 and dedup.nbytes < full / 100
    assert dedup.first_time(int(ids[0]), 3 * DAY_US)  # forgotten: new again


def test_deduplicator_verdicts_equal_a_sets_through_growth_forgetting_and_restore():
    rng = np.random.default_rng(3)
    dedup, seen, duplicates = Deduplicator(horizon_us=50), {}, 0
    for step in range(300):
        ids = rng.integers(-(2**63), 2**63 - 1, 500, dtype=np.int64)
        repeat = rng.random(500) < 0.3
        ids[repeat] = rng.integers(0, 3_000, int(repeat.sum()))  # many repeats, within and across calls
        times = np.full(500, step, np.int64)
        expected = []
        for event_id in ids.tolist():
            expected.append(event_id not in seen)
            seen.setdefault(event_id, step + 50)
        duplicates += expected.count(False)
        assert dedup.first_time_many(ids, times).tolist() == expected
        if step % 7 == 0:
            dedup.forget_before(step)
            seen = {i: f for i, f in seen.items() if f >= step}
        if step % 50 == 0:
            restored = Deduplicator(horizon_us=50)
            restored.restore(dedup.state())
            dedup = restored
        assert len(dedup) == len(seen) and dedup.duplicates == duplicates
    state = dedup.state()
    assert dict(zip(state["ids"].tolist(), state["forget_at"].tolist(), strict=True)) == seen


def test_the_pipeline_forgets_event_ids_both_while_applying_and_while_idle():
    catalogue = Catalogue(category={"i": "dresses"}, retail={"i": 100}, units={"i": 1})
    pipeline = FeaturePipeline(catalogue, views=("item_popularity",))
    day = [(CREATED, f"e{n}", "i", "c", n * 60_000_000, 1000, 2) for n in range(5_000)]
    pipeline.process_many(day)
    assert len(pipeline.dedup) == 5_000
    later = DEDUP_HORIZON_US + 4 * DAY_US  # the first ids span 3.5 days
    pipeline.process_many([(CREATED, f"f{n}", "i", "c", later + n, 1000, 2) for n in range(4_096)])
    assert len(pipeline.dedup) == 4_096  # the year-old ids went as events arrived
    pipeline.advance(2 * later)
    assert len(pipeline.dedup) == 0  # and, idle, as the clock moved on
