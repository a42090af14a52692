"""Redis lost part way: the stage stops with a clear error, no resume point passes a lost write,
and the restart makes the online features exactly the backfill's.

The consumer reaches Redis through a real TCP proxy (``tests/worlds/fault_proxy.py``). The first
part of a history is consumed and checkpointed through it; then the proxy black-holes every
connection (the writes vanish, no reply comes: a half-open connection) and the rest of the
history is produced. Only the writer's socket timeout can end the wait. The stage must stop
naming Redis, the wait and its setting; every stage's saved offsets must be those of the first
part, since none of the later writes was confirmed; and a restart with Redis reachable must end
with every entity's online features equal to the backfill's, the entities whose last writes
were lost included.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from streaming.backfill import timeline
from streaming.consumer import checkpoint
from streaming.consumer.stages import stages
from streaming.events import to_us
from streaming.feature_store.store import feature_store
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.producer import make_producer, send_events
from streaming.simulator.history import simulate
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig
from tests.integration.test_stream_features import _expected_store, _online
from tests.integration.test_stream_fuzz import _group_done
from tests.worlds.fault_proxy import FaultProxy
from tests.worlds.stream_world import make_world, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

END = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
REDIS_DB, EXPECTED_DB = 15, 2
TIMEOUT_S = 1.5  # the stages' Redis socket timeout here
FIRST_PART = 0.8  # at least this share of the history is consumed and checkpointed before Redis goes


@pytest.fixture(scope="module")
def history():
    return simulate(SimulationConfig(seed=18, items=120, bookings=3_000, end=END))


def _saved_offsets(world) -> dict[tuple[str, int], int | None]:
    """Every stage's saved resume offset, per topic partition (None: nothing saved)."""
    s, out = world.settings, {}
    specs = s.topic_specs()
    for stage in stages(s).values():
        for p in range(specs[stage.topic][0]):
            saved = checkpoint.load(s, stage.group(s), stage.topic, p)
            out[(stage.topic, p)] = saved["offset"] if saved else None
    return out


def _all_groups_done(world) -> bool:
    s = world.settings
    return all(_group_done(s.bootstrap_servers, stage.group(s), stage.topic) for stage in stages(s).values())


def _views(history):
    return (("item_popularity", "item_id", history.items["item_id"].tolist()),
            ("customer_history", "customer_id", history.customers["customer_id"].tolist()),
            ("category_season", "category", sorted(history.items["category"].unique())))  # fmt: skip


def test_redis_black_holed_part_way_loses_nothing_after_the_restart(tmp_path, settings, history):
    world = make_world(tmp_path, settings, history, redis_db=REDIS_DB, RENTAL_STREAM_NOW=NOW.isoformat(),
                       RENTAL_CHECKPOINT_EVERY_S="0.3", RENTAL_STREAM_REDIS_TIMEOUT_S=str(TIMEOUT_S))  # fmt: skip
    proxy = FaultProxy(settings.redis_host, settings.redis_port)
    try:
        _run(world, proxy, history)
    finally:
        proxy.close()
        world.remove_topics()


def _run(world, proxy: FaultProxy, history) -> None:
    s = world.settings
    through_proxy = {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"}
    events = list(history_events(history.bookings))
    # Every item of the second part has a row from the first, so the items stage has no stamp to
    # read (HGET) after Redis goes: its HSETs are queued and only its checkpoint can notice them
    # unconfirmed, the ordering under test.
    first_seen = {}
    for i, event in enumerate(events):
        first_seen.setdefault(event.item_id, i)
    split = max(int(len(events) * FIRST_PART), max(first_seen.values()) + 1)
    assert split <= len(events) * 0.9
    producer = make_producer(s)
    send_events(producer, s.topic_bookings, events[:split])

    first = world.consumer(**through_proxy)
    try:
        wait_for(lambda: first.poll() is not None or _all_groups_done(world), 120,
                 "every stage to checkpoint the first part", interval_s=1.0)  # fmt: skip
        assert first.poll() is None, world.logs()[-5_000:]
        before = _saved_offsets(world)
        assert sum(o or 0 for (topic, _), o in before.items() if topic == s.topic_bookings) == split

        proxy.black_hole()
        send_events(producer, s.topic_bookings, events[split:])
        producer.close()
        started = time.monotonic()
        code = first.wait(timeout=60)
        stopped_after = time.monotonic() - started
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    logs = world.logs()
    assert code != 0, logs[-5_000:]
    assert proxy.dropped > 0  # the later writes reached the proxy and went no further
    # The stage stopped on the timeout, with what timed out, after how long, and its setting.
    assert f"Redis at 127.0.0.1:{proxy.port}/{REDIS_DB} did not respond within {TIMEOUT_S:g} s" in logs, logs[-5_000:]
    assert "RENTAL_STREAM_REDIS_TIMEOUT_S" in logs
    assert "items: the Redis writes since the last checkpoint are not all confirmed" in logs
    assert "waiting for the replies to" in logs and "HSETs (the socket timeout" in logs
    assert stopped_after < 45, f"the stages took {stopped_after:.0f} s to stop"
    # No resume point moved: nothing written after Redis went was confirmed.
    assert _saved_offsets(world) == before

    # The later rows really are missing from Redis, so the comparison below means something.
    pipeline = FeaturePipeline(Catalogue.from_items(history.items))
    columns = ("kind", "event_id", "item_id", "customer_id", "time_us", "price_pence", "rental_days")
    backfill = timeline(history.bookings)
    for args in zip(*(backfill[c].tolist() for c in columns), strict=True):
        pipeline.process(*args)
    pipeline.advance(to_us(NOW))
    live, expected = feature_store(s), _expected_store(world, pipeline, redis_db=EXPECTED_DB)
    items = _views(history)[0]
    assert not _online(live, *items).equals(_online(expected, *items))

    second = world.consumer("--until-idle", "3")  # Redis reachable again, directly
    assert second.wait(timeout=120) == 0, world.logs()[-5_000:]
    assert sum(o or 0 for (topic, _), o in _saved_offsets(world).items() if topic == s.topic_bookings) == len(events)
    for view, key, ids in _views(history):
        pd.testing.assert_frame_equal(_online(live, view, key, ids), _online(expected, view, key, ids))
    assert _online(live, *items)["bookings_30d"].fillna(0).sum() > 0
