"""The loop, end to end, as `make demo` runs it: a shift injected into the live stream, drift
caught, a retrain request, the `retrain` flow's run, a new version through the gate and the
running service answering with it without a restart; then a candidate that fails the gate and
is not served.

Everything is real and the world is the test's own: a data dir (history, offline store, Feast
registry, MLflow, Prefect's home), a Redis server, topics and consumer groups on the shared
broker. The first champion is trained with 20 boosting rounds, so a full retrain is a better
model on any data and the pass case does not hang on a coin toss between near-equal models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from rental.servers.redis import RedisServer
from rental.settings import Settings
from tests.worlds.ports import free_port

pytestmark = pytest.mark.integration
TOPICS = ("BOOKINGS", "BOOKINGS_DLQ", "BOOKINGS_BY_CUSTOMER", "BOOKINGS_BY_CATEGORY", "ITEMS", "PREDICTIONS",
          "RETRAIN_REQUESTS")  # fmt: skip


def rental(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "rental.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, (
        f"rental {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done


@pytest.fixture(scope="module")
def world(tmp_path_factory, settings) -> Iterator[dict[str, str]]:
    """make demo's first steps in a world of the test's own: history, catalogue, features, a champion."""
    run = uuid.uuid4().hex[:8]
    data = tmp_path_factory.mktemp("loop-world")
    port = free_port()
    redis = RedisServer(settings.model_copy(update={"data_dir": data / "redis", "redis_port": port}))
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RENTAL_", "PREFECT_", "MLFLOW_"))} | {
        "RENTAL_DATA_DIR": str(data), "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "PREFECT_HOME": str(data / "prefect"),
        "RENTAL_CONSUMER_GROUP_PREFIX": f"loop-{run}", "RENTAL_FLOW_REQUESTS_GROUP_ID": f"loop-{run}-flows",
        "RENTAL_HISTORY_ARCHIVE_GROUP_ID": f"loop-{run}-archive",
    } | {f"RENTAL_TOPIC_{name}": f"loop-{run}.{name.lower().replace('_', '-')}" for name in TOPICS}  # fmt: skip
    try:
        rental(env, "services", "up")  # the broker and Redis answer: it only makes this world's topics
        rental(env, "simulate", "history", "--items", "600", "--bookings", "20000")
        rental(env, "catalogue", "publish")
        rental(env, "features", "backfill")
        rental(env, "features", "apply")
        rental(env, "features", "materialize", "--full")
        rental(env | {"RENTAL_XGB_NUM_BOOST_ROUND": "20"}, "train")
        yield env
    finally:
        redis.stop()
        _remove_topics(settings, [env[f"RENTAL_TOPIC_{name}"] for name in TOPICS])


def _remove_topics(settings: Settings, names: list[str]) -> None:
    from rental.servers.topics import admin_client

    with admin_client(settings) as admin:
        admin.delete_topics([n for n in names if n in set(admin.list_topics())])


def _champion(env: dict[str, str]) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{env['RENTAL_DATA_DIR']}/mlflow/mlflow.db")
    return client.get_model_version_by_alias("rental-price", "champion").version


def test_a_shift_is_caught_retrained_gated_and_served_without_a_restart(world, tmp_path):
    before = _champion(world)
    summary = tmp_path / "loop.json"
    done = rental(world, "demo", "drift", "--summary-json", str(summary), timeout=1500)
    loop = json.loads(summary.read_text())
    assert "retrain requested" in done.stdout
    assert loop["status"] == "completed" and loop["promoted"], loop
    assert loop["served_before"] == before and loop["version"] != before
    assert loop["served_after"] == loop["version"], "the running service did not move to the new champion"
    assert _champion(world) == loop["version"]
    assert {"detect_s", "retrain_s", "swap_s"} <= set(loop["timings"])
    assert any("MAE" in reason and "champion" in reason for reason in loop["gate_reasons"])


def test_a_candidate_that_fails_the_gate_is_not_served(world, tmp_path):
    """A retrain request whose run boosts one round: the gate refuses it and the running service
    keeps its champion, past two polls of the alias."""
    from rental.servers import pricing as pricing_server

    champion = _champion(world)
    served = pricing_server.start({k: v for k, v in world.items() if k.startswith("RENTAL_") or k == "REDIS_URL"},
                                  tmp_path / "bento.log")  # fmt: skip
    try:
        quote = _any_quote(world)
        with served.http_client(timeout=10) as http:
            assert http.post("/predict", json=quote).json()["model_version"] == champion
            request = {"schema_version": 1, "idempotency_key": uuid.uuid4().hex, "model_name": "rental-price",
                       "champion_version": champion, "reasons": ["price_bias"], "explanations": [], "windows": []}  # fmt: skip
            outcome = _handle(world | {"RENTAL_XGB_NUM_BOOST_ROUND": "1"}, json.dumps(request).encode())
            assert outcome["status"] == "completed" and outcome["version"] not in (None, champion), outcome
            assert outcome["promoted"] is False and any("baseline" in r for r in outcome["gate_reasons"]), outcome
            time.sleep(2 * Settings().serve_alias_poll_s + 1)
            assert http.post("/predict", json=quote).json()["model_version"] == champion
        assert _champion(world) == champion
    finally:
        pricing_server.stop(served)


def _any_quote(env: dict[str, str]) -> dict:
    import pandas as pd

    bookings = pd.read_parquet(f"{env['RENTAL_DATA_DIR']}/simulation/bookings.parquet").iloc[-1]
    start = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=10)).date().isoformat()
    return {"item_id": bookings["item_id"], "customer_id": bookings["customer_id"], "rental_start": start,
            "rental_days": 3}  # fmt: skip


def _handle(env: dict[str, str], value: bytes) -> dict:
    """The request handled as the listener handles a record, in a process of the world's settings."""
    code = (
        "import json, sys\n"
        "import flows\n"
        "from flows.requests import handle_request\n"
        "from rental.settings import Settings\n"
        "o = handle_request(Settings(), sys.stdin.buffer.read(), where='test')\n"
        "print(json.dumps({'status': o.status, 'reason': o.reason, 'version': o.run.get('version'),"
        " 'promoted': o.run.get('promoted'), 'gate_reasons': o.run.get('gate_reasons', [])}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, input=value, capture_output=True, timeout=900)
    assert done.returncode == 0, done.stderr.decode()[-5000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])
