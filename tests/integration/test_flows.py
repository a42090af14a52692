"""The flows against real services: Kafka (a topic of the test's own), a Redis of its own, MLflow
and the offline store in a temporary data dir, and a real Prefect server (Prefect's test harness
starts one on a temporary SQLite database)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator

import pytest

# Prefect reads its home once, at its first import: a temporary one, not the shared data dir's.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="prefect-home-"))
import flows  # noqa: F401  (before Prefect: its offline environment)
from rental.servers.redis import RedisServer
from rental.settings import Settings
from tests.model.conftest import make_world
from tests.worlds.ports import free_port

pytestmark = pytest.mark.integration
STEPS = ["archive", "compact", "training set", "train", "evaluate", "register", "gate", "promote"]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory) -> Iterator[None]:
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: tmp_path_factory.mktemp("prefect-home")}), prefect_test_harness(120):
        yield


@pytest.fixture(scope="module")
def world(tmp_path_factory, settings) -> Iterator[Settings]:
    """The model tests' small world (history, offline store, Feast registry, MLflow) on a Redis of its own."""
    port = free_port()
    redis = RedisServer(settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("redis"), "redis_port": port}))
    redis.start()
    try:
        base = settings.model_copy(update={"redis_url_env": None, "redis_port": port})
        run = uuid.uuid4().hex[:12]  # the archive step reads a bookings topic of its own (none: nothing to append)
        yield make_world(tmp_path_factory.mktemp("flows-world"), base, seed=5, items=300, bookings=12_000,
                         topic_bookings=f"test.{run}.bookings", history_archive_group_id=f"test-{run}")  # fmt: skip
    finally:
        redis.stop()


def _task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     sort=TaskRunSort.EXPECTED_START_TIME_ASC)  # fmt: skip


def _retrain_runs() -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])))


def _split_a_closed_day(settings: Settings) -> tuple:
    """A closed day of the offline store with a second file, as a streaming writer leaves it."""
    day = sorted((settings.offline_dir / "item_popularity").glob("date=*"))[0]
    first = sorted(day.glob("*.parquet"))[0]
    shutil.copy(first, day / "streamed-copy.parquet")
    return day


def test_retrain_runs_compact_set_train_gate_promote_each_a_task(world, prefect_server):
    from mlflow import MlflowClient

    from flows.retrain import retrain
    from training.tracking import use_tracking

    day = _split_a_closed_day(world)
    state = retrain(settings=world.model_copy(update={"xgb_num_boost_round": 80}), reason="test", return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["compacted"]["item_popularity"][0] >= 2 and len(list(day.glob("*.parquet"))) == 1
    runs = _task_runs(state.state_details.flow_run_id)
    names = [run.name.rsplit("-", 1)[0] for run in runs]
    assert names == STEPS  # in this order, one task run each
    assert all(run.state.is_completed() for run in runs)
    assert result["promoted"] and result["version"] == "1"  # the first version: no champion to beat
    use_tracking(world)
    alias = MlflowClient().get_model_version_by_alias(world.registered_model_name, world.serving_alias)
    assert str(alias.version) == result["version"]


def _request(key: str, model: str) -> bytes:
    return json.dumps({"schema_version": 1, "idempotency_key": key, "model_name": model, "champion_version": "1",
                       "reasons": ["price_bias"], "windows": []}).encode()  # fmt: skip


def _listen(settings: Settings, expected: int | None, idle_s: float = 8.0) -> list:
    """Outcomes of a listener run until it handled ``expected`` records (None: until idle)."""
    from flows.requests import listen

    seen, stop = [], threading.Event()

    def on_outcome(outcome) -> None:
        seen.append(outcome)
        if expected is not None and len(seen) >= expected:
            stop.set()

    listen(settings, stop, on_outcome=on_outcome, idle_s=idle_s)
    return seen


def test_a_retrain_request_starts_one_run_duplicates_cool_down_and_restarts_start_none(world, prefect_server,
                                                                                         fresh_topic):  # fmt: skip
    from streaming.producer import make_producer

    topic = fresh_topic(1)
    local = world.model_copy(update={"topic_retrain_requests": topic, "flow_requests_group_id": f"test-{uuid.uuid4()}",
                                     "flow_retrain_cooldown_s": 3600.0, "xgb_num_boost_round": 20})  # fmt: skip
    model = local.registered_model_name
    producer = make_producer(local)
    for key, value in [("key-one", _request("key-one", model)), ("key-one", _request("key-one", model)),
                       ("bad", b'{"schema_version": 1, "model_n'), ("key-two", _request("key-two", model))]:  # fmt: skip
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    before = len(_retrain_runs())

    outcomes = _listen(local, expected=4)
    assert [(o.status, o.key) for o in outcomes] == [
        ("completed", "key-one"),
        ("duplicate", "key-one"),
        ("rejected", None),
        ("cooldown", "key-two"),
    ]
    assert outcomes[0].run["request_key"] == "key-one" and outcomes[0].run["version"]
    assert "not JSON" in outcomes[2].reason and "cool-down" in outcomes[3].reason
    runs = _retrain_runs()
    assert len(runs) == before + 1 and any(run.name == "request-key-one" for run in runs)

    assert _listen(local, expected=None) == []  # restarted in the same group: everything was committed
    again = _listen(local.model_copy(update={"flow_requests_group_id": f"test-{uuid.uuid4()}"}), expected=4)
    assert [o.status for o in again] == ["duplicate", "duplicate", "rejected", "duplicate"]  # a new group re-reads all
    assert len(_retrain_runs()) == before + 1
