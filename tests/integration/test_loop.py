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
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from rental.settings import Settings
from tests.worlds.loop_world import champion as alias_version
from tests.worlds.loop_world import loop_world, rental

pytestmark = pytest.mark.integration
WORLD_SERVICES = ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="module")
def world(tmp_path_factory, settings) -> Iterator[dict[str, str]]:
    """make demo's first steps in a world of the test's own: history, catalogue, features, a quick champion."""
    with loop_world(settings, tmp_path_factory.mktemp("loop-world"), items=600, bookings=20_000) as env:
        yield env


def test_a_shift_is_caught_retrained_gated_and_served_without_a_restart(world, tmp_path):
    before = alias_version(world)
    summary = tmp_path / "loop.json"
    done = rental(world, "demo", "drift", "--summary-json", str(summary), timeout=1500)
    loop = json.loads(summary.read_text())
    assert "retrain requested" in done.stdout
    assert loop["status"] == "completed" and loop["promoted"], loop
    assert loop["served_before"] == before and loop["version"] != before
    assert loop["served_after"] == loop["version"], "the running service did not move to the new champion"
    assert alias_version(world) == loop["version"]
    assert {"detect_s", "retrain_s", "swap_s"} <= set(loop["timings"])
    assert any("MAE" in reason and "champion" in reason for reason in loop["gate_reasons"])


def test_a_candidate_that_fails_the_gate_is_not_served(world, tmp_path):
    """A retrain request whose run boosts one round: the gate refuses it and the running service
    keeps its champion, past two polls of the alias."""
    from rental.servers import pricing as pricing_server

    champion = alias_version(world)
    served = pricing_server.start({k: v for k, v in world.items() if k.startswith("RENTAL_") or k in WORLD_SERVICES},
                                  tmp_path / "bento.log")  # fmt: skip
    try:
        quote = _any_quote(world)
        with served.http_client(timeout=10) as http:
            assert http.post("/predict", json=quote).json()["model_version"] == champion
            request = {"schema_version": 1, "idempotency_key": uuid.uuid4().hex, "model_name": "rental-price",
                       "champion_version": champion, "reasons": ["price_bias"], "explanations": [], "windows": []}  # fmt: skip
            # one boosting round; no cool-down, as the first test's request may have started a run just now
            refused = world | {"RENTAL_XGB_NUM_BOOST_ROUND": "1", "RENTAL_FLOW_RETRAIN_COOLDOWN_S": "0"}
            outcome = _handle(refused, json.dumps(request).encode())
            assert outcome["status"] == "completed" and outcome["version"] not in (None, champion), outcome
            assert outcome["promoted"] is False and any("baseline" in r for r in outcome["gate_reasons"]), outcome
            time.sleep(2 * Settings().serve_alias_poll_s + 1)
            assert http.post("/predict", json=quote).json()["model_version"] == champion
        assert alias_version(world) == champion
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
