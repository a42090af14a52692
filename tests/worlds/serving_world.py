"""A small, complete world to serve: history, offline store, Feast registry, Redis (its own db)
and an MLflow registry with two versions of the model, one of them champion.

The serving tests and ``make bench-serve`` build it in a temporary data dir, so they never
touch the default data or another engineer's Redis db. One item is added to the catalogue with
no bookings at all: the cold start a new listing is.
"""

from __future__ import annotations

import os
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import redis as redis_py
from mlflow import MlflowClient

from rental.settings import Settings

NEW_ITEM = "item_new_listing"  # in the catalogue, never booked
FAST = {"xgb_learning_rate": 0.2, "xgb_num_boost_round": 300, "xgb_early_stopping_rounds": 30}
SMALL = {"xgb_max_depth": 3, "xgb_num_boost_round": 40}  # the second, weaker version


@dataclass
class ServingWorld:
    settings: Settings
    env: dict[str, str]  # the environment that points a process (bentoml serve) at this world
    champion: str  # model versions
    other: str
    items: list[str]  # catalogue item ids with bookings, busiest first
    customers: list[str]


# Where the local services listen: a world on other ports than the defaults keeps them.
SERVICE_ADDRESS = ("RENTAL_KAFKA_HOST", "RENTAL_KAFKA_PORT", "RENTAL_REDIS_HOST", "RENTAL_REDIS_PORT")


def world_env(data_dir: Path, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in SERVICE_ADDRESS if k in os.environ}
    env |= {"RENTAL_DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "MLFLOW_TRACKING_URI": ""}
    return env | extra


def settings_of(env: dict[str, str], **fields) -> Settings:
    """The settings a process started with ``env`` reads (RENTAL_X -> field x). Every address is
    passed explicitly: this process's own environment may hold others (``mlflow.set_tracking_uri``
    exports MLFLOW_TRACKING_URI, so an earlier test's registry would otherwise leak in)."""
    named = {k.removeprefix("RENTAL_").lower(): v for k, v in env.items() if k.startswith("RENTAL_")}
    return Settings(REDIS_URL=env["REDIS_URL"], KAFKA_BOOTSTRAP_SERVERS=env.get("KAFKA_BOOTSTRAP_SERVERS"),
                    MLFLOW_TRACKING_URI=env.get("MLFLOW_TRACKING_URI") or None, **named | fields)  # fmt: skip


def _with_new_item(items: pd.DataFrame) -> pd.DataFrame:
    new = items.iloc[[0]].copy()
    new["item_id"] = NEW_ITEM
    new["listing_date"] = items["listing_date"].max()  # the newest listing
    return pd.concat([items, new], ignore_index=True)


def build(data_dir: Path, base: Settings, redis_db: int, items: int = 300, bookings: int = 12_000,
          seed: int = 7, **extra_env: str) -> ServingWorld:  # fmt: skip
    """Simulate up to today, backfill, apply, materialize into Redis db ``redis_db``, train twice."""
    from streaming.backfill import run_backfill
    from streaming.events import EPOCH
    from streaming.feature_store.store import apply, feature_store
    from streaming.history.tables import History, write_history
    from streaming.simulator.history import simulate
    from streaming.simulator.world import SimulationConfig
    from training.train import run_training

    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    env = world_env(data_dir, redis_url, **extra_env)
    if base.kafka_is_external:
        env["KAFKA_BOOTSTRAP_SERVERS"] = base.bootstrap_servers
    settings = settings_of(env, **FAST)
    redis_py.Redis.from_url(redis_url).flushdb()
    now = datetime.now(UTC)
    config = SimulationConfig(seed=seed, items=items, bookings=bookings, end=now.date())
    history = simulate(config)
    history = History(_with_new_item(history.items), history.customers, history.bookings)
    write_history(history, settings.history_dir)
    (settings.history_dir / "simulation.json").write_text(config.model_dump_json(indent=2))  # as `simulate` writes
    run_backfill(history, settings, as_of=pd.Timestamp(now))
    apply(settings)
    with redirect_stdout(sys.stderr):  # Feast prints its progress; stdout is for results (the bench's JSON)
        feature_store(settings).materialize(start_date=EPOCH, end_date=now)

    exported = os.environ.get("MLFLOW_TRACKING_URI")  # mlflow.set_tracking_uri exports it: put it back after
    try:
        other = run_training(settings.model_copy(update=SMALL)).version
        champion = run_training(settings).version
    finally:
        if exported is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = exported
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.set_registered_model_alias(settings.registered_model_name, settings.serving_alias, champion)
    busiest = history.bookings["item_id"].value_counts()
    customers = history.bookings["customer_id"].value_counts()
    return ServingWorld(
        settings, env, champion, other, [str(i) for i in busiest.index], [str(c) for c in customers.index[:50]]
    )
