"""A small trained world shared by the model tests: history, offline store, Feast registry,
and an MLflow SQLite registry in a temporary data dir, on the real Redis (its own db)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from rental.settings import Settings
from streaming.backfill import run_backfill
from streaming.feature_store.store import apply
from streaming.history.tables import write_history
from streaming.simulator.history import simulate
from streaming.simulator.world import SimulationConfig
from tests.integration.conftest import local_services, settings  # noqa: F401  (the real services)

REDIS_DB = 11
END = date(2026, 6, 1)
FAST = {"xgb_learning_rate": 0.2, "xgb_num_boost_round": 400, "xgb_early_stopping_rounds": 30}


def make_world(data_dir, base: Settings, seed: int, items: int, bookings: int, **overrides) -> Settings:
    """Simulate, backfill and apply into ``data_dir``; the settings that point there."""
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    local = Settings(data_dir=data_dir, REDIS_URL=redis_url, MLFLOW_TRACKING_URI=None, **FAST | overrides)
    history = simulate(SimulationConfig(seed=seed, items=items, bookings=bookings, end=END))
    write_history(history, local.history_dir)
    run_backfill(history, local, as_of=pd.Timestamp(END, tz="UTC"))
    apply(local)
    return local


@pytest.fixture(scope="session")
def world(tmp_path_factory, settings) -> Settings:  # noqa: F811
    return make_world(tmp_path_factory.mktemp("train-world"), settings, seed=5, items=300, bookings=12_000)


@pytest.fixture(scope="session")
def trained(world):
    """The world's training set, split, fitted model and its evaluation."""
    from training.dataset import build_training_set
    from training.fit import fit, time_split
    from training.train import evaluation

    data = build_training_set(world)
    split = time_split(data.frame, world)
    fitted = fit(data, split, world)
    return data, split, fitted, evaluation(fitted, data.frame[split.train], data.frame[split.valid])
