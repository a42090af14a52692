"""The demo's world, isolated, for the loop's test and benchmark: a data dir, a Redis server
and topics and consumer groups of its own on the shared broker, prepared by `make demo`'s own
commands (history, catalogue, backfill, apply, materialize, a quick first champion)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rental.servers.redis import RedisServer
from rental.settings import Settings
from tests.worlds.ports import free_port

TOPICS = ("BOOKINGS", "BOOKINGS_DLQ", "BOOKINGS_BY_CUSTOMER", "BOOKINGS_BY_CATEGORY", "ITEMS", "PREDICTIONS",
          "RETRAIN_REQUESTS")  # fmt: skip
QUICK_ROUNDS = "20"  # make demo's first champion: the loop's retrain, on the full budget, replaces it


def rental(env: dict[str, str], *args: str, timeout: float = 900, quiet: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "rental.cli", *args], env=env, capture_output=quiet, text=True,
                          timeout=timeout)  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"rental {' '.join(args)} exited {done.returncode}:\n"
                             f"{(done.stdout or '')[-3000:]}\n{(done.stderr or '')[-5000:]}")  # fmt: skip
    return done


@contextmanager
def loop_world(settings: Settings, data: Path, items: int = 2_000, bookings: int = 60_000) -> Iterator[dict[str, str]]:
    """The environment of a prepared world with a champion; its Redis and topics go afterwards."""
    run = uuid.uuid4().hex[:8]
    port = free_port()
    redis = RedisServer(settings.model_copy(update={"data_dir": data / "redis", "redis_port": port}))
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RENTAL_", "PREFECT_", "MLFLOW_"))} | {
        "RENTAL_DATA_DIR": str(data), "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "PREFECT_HOME": str(data / "prefect"),
        "RENTAL_CONSUMER_GROUP_PREFIX": f"loop-{run}", "RENTAL_FLOW_REQUESTS_GROUP_ID": f"loop-{run}-flows",
        "RENTAL_HISTORY_ARCHIVE_GROUP_ID": f"loop-{run}-archive",
        # Named, not derived: a test process whose MLflow was pointed elsewhere (mlflow.set_tracking_uri
        # sets this variable) must not hand that to the world's service.
        "MLFLOW_TRACKING_URI": f"sqlite:///{data}/mlflow/mlflow.db",
    } | {f"RENTAL_TOPIC_{name}": f"loop-{run}.{name.lower().replace('_', '-')}" for name in TOPICS}  # fmt: skip
    try:
        rental(env, "services", "up")  # the broker and Redis answer: it only makes this world's topics
        rental(env, "simulate", "history", "--items", str(items), "--bookings", str(bookings))
        for step in (("catalogue", "publish"), ("features", "backfill"), ("features", "apply"),
                     ("features", "materialize", "--full")):  # fmt: skip
            rental(env, *step)
        rental(env | {"RENTAL_XGB_NUM_BOOST_ROUND": QUICK_ROUNDS}, "train")
        yield env
    finally:
        redis.stop()
        _remove_topics(settings, [env[f"RENTAL_TOPIC_{name}"] for name in TOPICS])


def champion(env: dict[str, str]) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    return str(client.get_model_version_by_alias("rental-price", "champion").version)


def _remove_topics(settings: Settings, names: list[str]) -> None:
    from rental.servers.topics import admin_client

    with admin_client(settings) as admin:
        admin.delete_topics([n for n in names if n in set(admin.list_topics())])
