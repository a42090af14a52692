"""Window arithmetic: (t - window, t], decay by expiry rows, late events, de-duplication."""

import random

import numpy as np
import pytest

from streaming.events import CANCELLED, CREATED
from streaming.features.pipeline import Catalogue, FeaturePipeline, UnknownItem
from streaming.features.windows import DAY_US, Deduplicator, Spec, WindowEngine

WEEK, MONTH = 7 * DAY_US, 30 * DAY_US


def _columns(rows):
    return {"week": rows.sums[:, 0, 0], "month": rows.sums[:, 1, 0], "amount": rows.sums[:, 1, 1]}


class _Engine(WindowEngine):
    """Rows with their time as "at", for short assertions."""

    def take_rows(self):
        return [dict(r, at=r["event_timestamp"]) for r in super().take_rows()]

    def values(self, key):
        return dict(super().values(key), at=self.clock_us)


def _engine():
    return _Engine(Spec("test", "key", (WEEK, MONTH), 2, _columns))


def _value_at(rows, key, t):
    """What a point-in-time read returns: the latest row at or before t."""
    before = [r for r in rows if r["key"] == key and r["at"] <= t]
    return max(before, key=lambda r: r["at"]) if before else None


def test_an_event_counts_from_its_time_and_leaves_exactly_one_window_later():
    engine = _engine()
    engine.apply("a", 10 * DAY_US, (1, 500))
    engine.advance(100 * DAY_US)
    rows = engine.take_rows()
    assert [(r["at"], r["week"], r["month"]) for r in rows] == [
        (10 * DAY_US, 1, 1),  # counted at its own time: (t - w, t] includes t
        (17 * DAY_US, 0, 1),  # gone from the week exactly 7 days later
        (40 * DAY_US, 0, 0),  # and from the month 30 days later: decayed with no new events
    ]
    assert _value_at(rows, "a", 17 * DAY_US - 1)["week"] == 1
    assert _value_at(rows, "a", 17 * DAY_US)["week"] == 0


def test_expiry_and_event_at_the_same_instant_expiry_first():
    engine = _engine()
    engine.apply("a", 0, (1, 1))
    engine.apply("a", WEEK, (1, 1))  # the first leaves the week as the second arrives
    rows = engine.take_rows()
    assert rows[-1]["week"] == 1 and rows[-1]["month"] == 2
    assert len({r["at"] for r in rows}) == len(rows)  # every row of an entity has its own time


def test_rows_of_one_entity_have_strictly_increasing_times():
    engine = _engine()
    for _ in range(3):
        engine.apply("a", 5 * DAY_US, (1, 1))  # three events at the same microsecond
    times = [r["at"] for r in engine.take_rows()]
    assert times == sorted(set(times)) and times[0] == 5 * DAY_US and times[-1] == 5 * DAY_US + 2


def test_late_event_counts_where_it_still_falls_and_is_stamped_with_the_clock():
    engine = _engine()
    engine.apply("b", 20 * DAY_US, (1, 1))  # another entity moves the clock to day 20
    engine.apply("a", 10 * DAY_US, (1, 7))  # ten days late: outside the week, inside the month
    row = engine.take_rows()[-1]
    assert (row["at"], row["week"], row["month"], row["amount"]) == (20 * DAY_US, 0, 1, 7)
    assert engine.late == 1
    engine.advance(40 * DAY_US)
    assert engine.take_rows()[-1]["month"] == 0  # it leaves the month at its own time + 30 days


def _brute(events, key, t, window):
    return sum(m[0] for k, et, m in events if k == key and t - window < et <= t)


@pytest.mark.parametrize("seed", range(5))
def test_every_row_equals_a_brute_force_count_at_its_time(seed):
    rnd = random.Random(seed)
    events = sorted(
        ((rnd.choice("abc"), rnd.randrange(0, 120 * DAY_US), (1, rnd.randrange(100))) for _ in range(400)),
        key=lambda e: e[1],
    )
    engine = _engine()
    for key, t, measures in events:
        engine.apply(key, t, measures)
    engine.advance(200 * DAY_US)
    rows = engine.take_rows()
    for _ in range(300):  # random instants: the latest row equals the definition there
        key, t = rnd.choice("abc"), rnd.randrange(0, 200 * DAY_US)
        row = _value_at(rows, key, t)
        if row is None:
            assert _brute(events, key, t, MONTH) == 0
            continue
        assert row["week"] == _brute(events, key, t, WEEK)
        assert row["month"] == _brute(events, key, t, MONTH)


@pytest.mark.parametrize("seed", range(5))
def test_final_values_do_not_depend_on_arrival_order(seed):
    """Partitions interleave differently on every run; the values at the end must not."""
    rnd = random.Random(seed)
    events = [(rnd.choice("abcd"), rnd.randrange(0, 90 * DAY_US), (1, rnd.randrange(1000))) for _ in range(500)]
    in_order, shuffled = _engine(), _engine()
    for key, t, m in sorted(events, key=lambda e: e[1]):
        in_order.apply(key, t, m)
    # Keep each key's own events in order (one partition per key), interleave keys at random.
    by_key = {k: sorted((e for e in events if e[0] == k), key=lambda e: e[1]) for k in "abcd"}
    while any(by_key.values()):
        k = rnd.choice([k for k, v in by_key.items() if v])
        key, t, m = by_key[k].pop(0)
        shuffled.apply(key, t, m)
    end = 95 * DAY_US
    in_order.advance(end)
    shuffled.advance(end)
    for key in "abcd":
        a, b = in_order.values(key), shuffled.values(key)
        assert {k: v for k, v in a.items() if k not in ("at", "event_timestamp")} == {
            k: v for k, v in b.items() if k not in ("at", "event_timestamp")
        }


def test_deduplicator_forgets_after_its_horizon():
    dedup = Deduplicator(horizon_us=10)
    assert dedup.first_time(1, 0)
    assert not dedup.first_time(1, 5)
    assert dedup.duplicates == 1
    dedup.forget_before(11)
    assert len(dedup) == 0 and dedup.first_time(1, 12)


def test_deduplicator_many_repeats_within_a_call_count_once_and_duplicates_change_nothing():
    dedup = Deduplicator(horizon_us=10)
    assert dedup.first_time_many(np.array([1, 2]), np.array([0, 0])).tolist() == [True, True]
    fresh = dedup.first_time_many(np.array([3, 1, 3, 4, 4, 2]), np.array([1, 5, 6, 7, 8, 9]))
    assert fresh.tolist() == [True, False, False, True, False, False]
    assert dedup.duplicates == 4 and len(dedup) == 4
    dedup.forget_before(11)  # ids 1 and 2 expire at 10: a duplicate at 5 did not extend them
    assert sorted(dedup.state()["ids"].tolist()) == [3, 4]
    assert dedup.state()["forget_at"].tolist() == [11, 17]  # 3 and 4 kept their first time


def _pipeline():
    catalogue = Catalogue(
        category={"i1": "dress", "i2": "bag"}, retail={"i1": 300, "i2": 900}, units={"i1": 2, "i2": 1}
    )
    return FeaturePipeline(catalogue)


def test_pipeline_turns_bookings_and_cancellations_into_all_three_views():
    p = _pipeline()
    p.process(CREATED, "e1", "i1", "c1", DAY_US, price_pence=2550, rental_days=4)
    p.process(CREATED, "e2", "i1", "c2", 2 * DAY_US, price_pence=3050, rental_days=2)
    p.process(CANCELLED, "e3", "i1", "c1", 3 * DAY_US)
    rows = p.take_rows()
    item = rows["item_popularity"][-1]
    assert (item["bookings_7d"], item["bookings_30d"], item["cancellations_30d"]) == (2, 2, 1)
    assert item["revenue_30d"] == pytest.approx((2550 * 4 + 3050 * 2) / 100)
    assert item["avg_price_30d"] == pytest.approx(28.0)
    assert item["utilisation_30d"] == pytest.approx(6 / (2 * 30))
    assert item["last_booking_at"] == 2 * DAY_US  # the cancellation is not a booking
    assert rows["category_season"][-1]["category_bookings_7d"] == 2
    customer = rows["customer_history"][-1]
    assert (customer["customer_id"], customer["customer_bookings_365d"], customer["customer_cancellations_365d"]) == (
        "c1",
        1,
        1,
    )
    assert customer["customer_avg_retail_365d"] == 300


def test_pipeline_drops_a_redelivered_event_and_rejects_an_unknown_item():
    p = _pipeline()
    assert p.process(CREATED, "e1", "i1", "c1", DAY_US, 1000, 1)
    assert not p.process(CREATED, "e1", "i1", "c1", DAY_US, 1000, 1)
    assert p.take_rows()["item_popularity"][-1]["bookings_7d"] == 1
    with pytest.raises(UnknownItem):
        p.process(CREATED, "e9", "nope", "c1", DAY_US, 1000, 1)


def test_category_rows_tick_at_midnight_so_a_calendar_based_value_is_exact_between_rows():
    from streaming.features.definitions import category_season_spec

    rnd = random.Random(3)
    spec = category_season_spec()
    engine = WindowEngine(spec)
    times = sorted(rnd.randrange(0, 60 * DAY_US) for _ in range(300))
    for t in times:
        engine.apply("dress", t, (1,))
    engine.advance(70 * DAY_US)
    rows = [dict(r, key=r["category"], at=r["event_timestamp"]) for r in engine.take_rows()]
    assert any(r["at"] % DAY_US == 0 for r in rows)  # midnight rows exist
    for _ in range(200):
        t = rnd.randrange(times[0], 70 * DAY_US)
        row = _value_at(rows, "dress", t)
        week = sum(1 for x in times if t - 7 * DAY_US < x <= t)
        year = sum(1 for x in times if x <= t)
        span = min(365, max(7, t // DAY_US - times[0] // DAY_US))
        assert row["category_bookings_7d"] == week
        assert row["category_demand_index"] == pytest.approx((week / 7) / (year / span))


def test_a_restored_pipeline_continues_exactly_like_the_original():
    import pickle

    events = [
        (CREATED, f"e{i}", "i1" if i % 3 else "i2", f"c{i % 4}", i * DAY_US // 2, 1000 + i, 1 + i % 3)
        for i in range(60)
    ]
    whole, first = _pipeline(), _pipeline()
    for e in events:
        whole.process(*e)
    for e in events[:25]:
        first.process(*e)
    second = _pipeline()
    second.restore(pickle.loads(pickle.dumps(first.state())))
    assert not second.process(*events[24])  # already seen before the snapshot
    for e in events[25:]:
        second.process(*e)
    end = 60 * DAY_US
    whole.advance(end)
    second.advance(end)
    for view, engine in whole.engines.items():
        for key in engine.entities:
            assert second.engines[view].values(key) == engine.values(key)


def test_a_state_can_be_split_by_entity():
    p = _pipeline()
    p.process(CREATED, "e1", "i1", "c1", DAY_US, 1000, 1)
    p.process(CREATED, "e2", "i2", "c2", DAY_US, 1000, 1)
    state = p.state(keep=lambda key: key in ("i1", "c1", "dress"))
    assert set(state["engines"]["item_popularity"]["entities"]) == {"i1"}
    assert set(state["engines"]["customer_history"]["entities"]) == {"c1"}


@pytest.mark.parametrize("seed", range(4))
def test_late_events_within_an_entity_are_linked_in_time_order(seed):
    """Runs of late events, as partitions interleave: each value, once the clock has passed
    every event, is the brute-force count, and later values decay exactly."""
    rnd = random.Random(seed)
    events = [(rnd.choice("ab"), rnd.randrange(0, 200 * DAY_US), (1, rnd.randrange(100))) for _ in range(600)]
    runs = [sorted(events[i : i + 40], key=lambda e: e[1]) for i in range(0, len(events), 40)]
    engine = _engine()
    for run in runs:  # each run in order, the runs in any order: many events land far back
        for key, t, measures in run:
            engine.apply(key, t, measures)
    for t in (200 * DAY_US, 210 * DAY_US, 225 * DAY_US, 231 * DAY_US):
        engine.advance(t)
        for key in "ab":
            value = engine.values(key)
            assert value["week"] == _brute(events, key, t, WEEK)
            assert value["month"] == _brute(events, key, t, MONTH)
    assert engine.late > 0
