"""The live feature consumer against the real broker, Redis and Feast.

Crash safety: a simulated history streamed through Kafka, the consumer SIGKILLed part way and
restarted; once drained, every item's, customer's and category's online features equal the
batch backfill's at the same moment, exactly. Scale out and restart anywhere: two instances of
every stage on different data directories sharing the state directory, one SIGKILLed part way,
equal the backfill exactly; one whose state directory is not the shared one refuses to start.
Bad events (event times out of bounds among them) land in the DLQ with their reasons and the
good events after them are processed.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from rental.connections import kafka_options
from streaming.backfill import timeline
from streaming.consumer.checkpoint import load
from streaming.events import BookingCreated, encode, to_us
from streaming.feature_store.offline import read_view, to_table
from streaming.feature_store.store import feature_store
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.producer import make_producer, send_events
from streaming.simulator.history import simulate
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig
from tests.worlds.stream_world import kill, make_world, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

END = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # the consumer's "now" when idle, and the backfill's moment


@pytest.fixture(scope="module")
def history():
    return simulate(SimulationConfig(seed=5, items=200, bookings=6_000, end=END))


@pytest.fixture(scope="module")
def backfill(history):
    """The batch backfill's pipeline at NOW, and every row it wrote on the way."""
    pipeline = FeaturePipeline(Catalogue.from_items(history.items))
    events = timeline(history.bookings)
    for args in zip(*(events[c].tolist() for c in ("kind", "event_id", "item_id", "customer_id", "time_us", "price_pence", "rental_days")), strict=True):  # fmt: skip
        pipeline.process(*args)
    pipeline.advance(to_us(NOW))
    return pipeline, pipeline.take_rows()


def _expected_store(world, pipeline, redis_db: int):
    """The batch backfill's values at NOW, written through Feast into a Redis db of their own."""
    settings = world.settings.model_copy(
        update={"redis_url_env": world.settings.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"}
    )
    store = feature_store(settings)
    import redis as redis_py

    redis_py.Redis.from_url(settings.redis_url).flushdb()
    for view, engine in pipeline.engines.items():  # through Feast's own writer, not ours
        rows = pd.DataFrame([engine.values(key) for key in engine.entities])
        for column in ("event_timestamp", "last_booking_at"):
            if column in rows:
                rows[column] = pd.to_datetime(rows[column], unit="us", utc=True)
        store.write_to_online_store(view, rows)
    return store


def _online(store, view: str, key: str, ids: list[str]) -> pd.DataFrame:
    features = [f"{view}:{f.name}" for f in store.get_feature_view(view).features]
    return store.get_online_features(features=features, entity_rows=[{key: i} for i in ids]).to_df()


def _assert_online_equal(live, expected, history) -> None:
    """Every item's, customer's and category's online features in ``live`` equal ``expected``'s."""
    items = history.items["item_id"].tolist()
    customers = history.customers["customer_id"].tolist()
    categories = sorted(history.items["category"].unique())
    pd.testing.assert_frame_equal(_online(live, "item_popularity", "item_id", items),
                                  _online(expected, "item_popularity", "item_id", items))  # fmt: skip
    pd.testing.assert_frame_equal(_online(live, "customer_history", "customer_id", customers),
                                  _online(expected, "customer_history", "customer_id", customers))  # fmt: skip
    pd.testing.assert_frame_equal(_online(live, "category_season", "category", categories),
                                  _online(expected, "category_season", "category", categories))  # fmt: skip
    booked = _online(live, "item_popularity", "item_id", items)["bookings_30d"].fillna(0)
    assert booked.sum() > 0  # the comparison is not between two empty stores


def _checkpointed_offsets(world, stage: str) -> int:
    group = f"{world.settings.consumer_group_prefix}-{stage}"
    total = 0
    for p in range(world.settings.bookings_partitions):
        saved = load(world.settings, group, world.settings.topic_bookings, p)
        total += saved["offset"] if saved else 0
    return total


@pytest.fixture
def world_of(tmp_path, settings, history):
    """A streaming world for the test (``sandbox.make_world``), its topics deleted after it."""
    made = []

    def make(redis_db: int, **overrides: str):
        made.append(make_world(tmp_path, settings, history, redis_db, **overrides))
        return made[-1]

    yield make
    for world in made:
        world.remove_topics()


def test_sigkill_part_way_then_restart_equals_the_backfill_exactly(world_of, history, backfill):
    world = world_of(redis_db=3, RENTAL_STREAM_NOW=NOW.isoformat(), RENTAL_CHECKPOINT_EVERY_S="0.3",
                     RENTAL_STREAM_MAX_POLL_RECORDS="100")  # fmt: skip
    producer = make_producer(world.settings)
    sent = send_events(producer, world.settings.topic_bookings, history_events(history.bookings))
    producer.close()

    first = world.consumer()
    wait_for(lambda: _checkpointed_offsets(world, "items") > 0, 120, "a first checkpoint of the items stage")
    kill(first)
    done_before_kill = _checkpointed_offsets(world, "items")
    assert 0 < done_before_kill < sent, f"the kill should land part way ({done_before_kill} of {sent})"

    second = world.consumer("--until-idle", "4")
    assert second.wait(timeout=300) == 0, world.logs()
    assert _checkpointed_offsets(world, "items") == sent

    pipeline, backfill_rows = backfill
    _assert_online_equal(feature_store(world.settings), _expected_store(world, pipeline, redis_db=4), history)
    items = history.items["item_id"].tolist()

    # The offline store holds the same item rows as the backfill: a replay after the kill may
    # append a row twice (identical), never a different one. Customer and category rows are
    # stamped in the order forwarded events arrive, so only their final values must agree.
    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop_duplicates().sort_values(["item_id", "event_timestamp"]).reset_index(drop=True)

    streamed = rows(read_view(world.settings, "item_popularity"))
    assert len(streamed) > len(items)
    pd.testing.assert_frame_equal(
        streamed, rows(to_table("item_popularity", backfill_rows["item_popularity"]).to_pandas())
    )


def test_bad_events_go_to_the_dlq_with_reasons_and_good_ones_after_them_are_processed(world_of, history):
    world = world_of(redis_db=5)
    item, customer = history.items["item_id"].iloc[0], history.customers["customer_id"].iloc[0]
    good = BookingCreated(
        event_id=f"good-{uuid.uuid4().hex}", booking_id="b-good", item_id=item, customer_id=customer,
        event_time=datetime.now(UTC), rental_start=date(2030, 1, 1), rental_days=3, price_per_day=40.0,
    )  # fmt: skip
    raw = json.loads(encode(good))
    bad = {
        "malformed JSON": b'{"schema_version": 1, "event_id": ',
        "schema_version: unsupported version 9": json.dumps(raw | {"schema_version": 9}).encode(),
        "customer_id: Field required": json.dumps({k: v for k, v in raw.items() if k != "customer_id"}).encode(),
        "price_per_day: Input should be greater than 0": json.dumps(raw | {"price_per_day": -5}).encode(),
        "rental_days: Input should be greater than or equal to 1": json.dumps(raw | {"rental_days": 0}).encode(),
        "malformed JSON: Expecting value: line 1 column 1 (char 0)": None,  # a null value (a tombstone)
        "item_id: unknown item 'no-such-item'": json.dumps(raw | {"item_id": "no-such-item"}).encode(),
        "more than RENTAL_STREAM_MAX_FUTURE_SKEW_S (300 s)": json.dumps(
            raw
            | {
                "event_id": f"ahead-{uuid.uuid4().hex}",
                "event_time": (good.event_time + timedelta(hours=1)).isoformat(),
            }
        ).encode(),
    }
    # After the good event has moved the partition's clock: older than every window.
    too_late = json.dumps(
        raw
        | {"event_id": f"late-{uuid.uuid4().hex}", "event_time": (good.event_time - timedelta(days=400)).isoformat()}
    ).encode()
    producer = KafkaProducer(**kafka_options(world.settings), acks="all")
    for payload in bad.values():
        producer.send(world.settings.topic_bookings, key=item.encode(), value=payload)
    producer.send(world.settings.topic_bookings, key=item.encode(), value=encode(good))
    producer.send(world.settings.topic_bookings, key=item.encode(), value=too_late)
    producer.flush()
    producer.close()

    consumer = world.consumer("--until-idle", "3")
    assert consumer.wait(timeout=120) == 0, world.logs()

    dlq = KafkaConsumer(world.settings.topic_bookings_dlq, **kafka_options(world.settings),
                        auto_offset_reset="earliest", consumer_timeout_ms=5000)  # fmt: skip
    letters = sorted((json.loads(r.value) for r in dlq), key=lambda letter: letter["source"]["offset"])
    dlq.close()
    expected = [*bad.items(), ("older than every window and the de-duplication horizon", too_late)]
    assert len(letters) == len(expected)
    for (reason, payload), letter in zip(expected, letters, strict=True):
        assert reason in letter["reason"]
        assert letter["payload"].encode() == (payload or b"")  # the original bytes, nothing lost
        assert letter["source"]["topic"] == world.settings.topic_bookings
    values = _online(feature_store(world.settings), "item_popularity", "item_id", [item])
    assert values["bookings_7d"].iloc[0] == 1
    assert values["revenue_7d"].iloc[0] == pytest.approx(120.0)


def _members(world, stage: str) -> int:
    admin = KafkaAdminClient(**kafka_options(world.settings))
    try:
        group = f"{world.settings.consumer_group_prefix}-{stage}"
        return len(admin.describe_groups([group])[group].get("members") or ())
    except KafkaError:
        return 0
    finally:
        admin.close()


def _machine(world, tmp_path, name: str, state_dir) -> dict[str, str]:
    """The environment of an instance on another machine: a data directory of its own (the Feast
    registry and the catalogue, no offline rows, no state) and ``state_dir`` for the state."""
    data = tmp_path / name
    shutil.copytree(world.settings.data_dir, data, ignore=shutil.ignore_patterns("stream_state", "offline", "*.log"))
    return {"RENTAL_DATA_DIR": str(data), "RENTAL_STATE_DIR": str(state_dir)}


def test_two_instances_split_the_partitions_one_is_sigkilled_and_the_features_equal_the_backfill(
    world_of, history, backfill, tmp_path
):
    """Scale out and restart anywhere: a second instance of every stage, on another data
    directory sharing only the state directory, joins part way through a replayed history; the
    first is SIGKILLed; the second takes its partitions over from the shared state and ends
    exactly equal to the backfill. An instance whose state directory is not the shared one
    refuses to start, saying what to do."""
    world = world_of(redis_db=6, RENTAL_STREAM_NOW=NOW.isoformat(), RENTAL_CHECKPOINT_EVERY_S="0.3",
                     RENTAL_STREAM_MAX_POLL_RECORDS="100", RENTAL_STREAM_SESSION_TIMEOUT_S="6")  # fmt: skip
    events = list(history_events(history.bookings))
    producer = make_producer(world.settings)
    topic, head = world.settings.topic_bookings, len(events) // 4
    sent = send_events(producer, topic, events[:head])

    first = world.consumer()
    wait_for(lambda: _checkpointed_offsets(world, "items") > 0, 120, "a first checkpoint of the items stage")
    second = world.consumer("--until-idle", "5", **_machine(world, tmp_path, "second", world.settings.state_dir))
    wait_for(lambda: all(_members(world, s) == 2 for s in ("items", "customers", "categories")), 120,
             "both instances in every stage's group")  # fmt: skip
    # The rest arrives as a live stream would, and the first instance dies half way through it.
    rest = events[head:]
    for i in range(0, len(rest), 100):
        sent += send_events(producer, topic, rest[i : i + 100])
        time.sleep(0.05)
        if i == (len(rest) // 200) * 100:
            kill(first)
            done_before_kill = _checkpointed_offsets(world, "items")
    producer.close()
    assert 0 < done_before_kill < sent, f"the kill should land part way ({done_before_kill} of {sent})"

    assert second.wait(timeout=300) == 0, world.logs()
    assert _checkpointed_offsets(world, "items") == sent
    assert "Traceback" not in world.logs()
    pipeline, _ = backfill
    _assert_online_equal(feature_store(world.settings), _expected_store(world, pipeline, redis_db=14), history)

    # A third machine whose state directory is its own: the groups have committed offsets it
    # cannot know the windows of, so it refuses rather than overwrite good features.
    stray = world.consumer("--stages", "items", "--until-idle", "2",
                           **_machine(world, tmp_path, "stray", tmp_path / "stray-state"))  # fmt: skip
    assert stray.wait(timeout=120) == 2, world.logs()
    said = " ".join(world.logs().split())  # the console wraps long lines
    assert "holds no state for it" in said and "Point RENTAL_STATE_DIR at the directory" in said, said[-3_000:]
