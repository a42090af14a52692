"""A world for monitoring's checks: one champion, and the prediction log it would have made
with and without each of the simulator's shifts.

One simulated platform (seed, catalogue, 500 days) is trained on up to ``T0`` through the real
training run (MLflow registry, the reference logged with the model); the weeks after ``T0``
are the live period. For each scenario the same platform is simulated again with the shift
from ``SHIFT_START`` (six windows before the end), its features backfilled and joined as of
each booking, and every booking becomes a quote priced by the registered champion
(``PricePredictor.from_registry``, the service's own predictor) and an outcome: booked by the
quoting customer at the price the history says was paid. So quotes here are all booked
(booking rate 1); the live service also logs quotes nobody booked.

Scenarios:
- ``none``: no shift, 20 weekly windows after training;
- ``inflation``: prices 15 % higher from the shift's start. The simulator's ``--inflation`` is
  an annual rate compounding from ``--shift-start`` (15 % a year is 1.2 % after a month, inside
  any window's noise), so this scenario applies the level it reaches: every price paid from the
  start, and through them the revenue and average-price features, is 1.15 times the simulated;
- ``trend``: ``gown`` demand x3 from the start (the simulator's ``--trend-category``; its
  price moves by 3 ** 0.3);
- ``off_season``: ``outerwear``'s season moved by six months (``--off-season``).

Quotes leave the service with their feature age: the live stream writes features within
seconds, so ``features_as_of`` here is the quote time less a few seconds.
"""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd

from monitoring.checks.windows import window_of
from rental.settings import Settings

END = date(2026, 6, 1)
WINDOW = timedelta(days=7)
SHIFTED_WINDOWS = 6
UNSHIFTED_WINDOWS = 20
INFLATION = 0.15
TREND_CATEGORY, TREND_FACTOR = "gown", 3.0
OFF_SEASON_CATEGORY = "outerwear"
SCENARIOS = ("none", "inflation", "trend", "off_season")
FAST = {"xgb_learning_rate": 0.2, "xgb_num_boost_round": 400, "xgb_early_stopping_rounds": 30}


def _aligned_end() -> datetime:
    return window_of(datetime.combine(END, datetime.min.time(), UTC), WINDOW).start


LIVE_END = _aligned_end()  # the history ends here, on a window boundary
SHIFT_START = LIVE_END - SHIFTED_WINDOWS * WINDOW
T0 = LIVE_END - UNSHIFTED_WINDOWS * WINDOW  # training data ends, the live period starts


@dataclass
class MonitorWorld:
    settings: Settings  # the trained world's settings (its MLflow registry)
    version: str  # the champion
    quotes: dict[str, pd.DataFrame]  # scenario -> quotes in the log's shape (all after T0)
    outcomes: dict[str, pd.DataFrame]

    def scenario_settings(self, name: str, folder: Path, **fields) -> Settings:
        """Settings whose monitoring files are in ``folder``, checking weekly windows."""
        return self.settings.model_copy(update={
            "monitor_dir_env": folder, "monitor_window_s": WINDOW.total_seconds(), **fields})  # fmt: skip


def _config(shift: str, items: int, bookings: int):
    from streaming.simulator.shifts import Shifts
    from streaming.simulator.world import SimulationConfig

    start = SHIFT_START
    shifts = {
        "none": Shifts(), "inflation": Shifts(),
        "trend": Shifts(start=start, trend_category=TREND_CATEGORY, trend_factor=TREND_FACTOR),
        "off_season": Shifts(start=start, off_season_category=OFF_SEASON_CATEGORY),
    }[shift]  # fmt: skip
    return SimulationConfig(seed=3, items=items, bookings=bookings, days=500, end=LIVE_END.date(), shifts=shifts)


def _history(shift: str, items: int, bookings: int):
    from streaming.history.tables import History
    from streaming.simulator.history import simulate

    history = simulate(_config(shift, items, bookings))
    if shift == "inflation":
        b = history.bookings.copy()
        after = (b["event_time"] >= pd.Timestamp(SHIFT_START)).to_numpy()
        b.loc[after, "price_per_day"] = (b.loc[after, "price_per_day"] * (1 + INFLATION)).round(2)
        b.loc[after, "expected_price_per_day"] = b.loc[after, "expected_price_per_day"] * (1 + INFLATION)
        history = History(history.items, history.customers, b)
    return history


def _features(settings: Settings, history) -> pd.DataFrame:
    """Every booking with the features it was quoted from (the training set's as-of join)."""
    from streaming.backfill import run_backfill
    from streaming.feature_store.store import apply
    from streaming.history.tables import write_history
    from training.dataset import build_training_set

    write_history(history, settings.history_dir)
    run_backfill(history, settings, as_of=pd.Timestamp(LIVE_END))
    with redirect_stdout(sys.stderr):
        apply(settings)
    return build_training_set(settings).frame


def _log_frames(frame: pd.DataFrame, predictor, version: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The live period's bookings as the log's quotes and outcomes."""
    live = frame[frame["event_time"] >= pd.Timestamp(T0)].reset_index(drop=True)
    price = np.round(predictor.predict(live), 2)
    quoted = pd.to_datetime(live["quote_time"], utc=True)
    rng = np.random.default_rng(seed)
    as_of = quoted - pd.to_timedelta(rng.exponential(5.0, len(live)), unit="s")
    ids = [f"q{seed}_{i:07d}" for i in range(len(live))]
    quotes = pd.DataFrame({
        "request_id": ids, "quoted_at": quoted, "protocol": "http", "item_id": live["item_id"].astype(str),
        "customer_id": live["customer_id"].astype(str), "category": None,
        "rental_start": pd.to_datetime(live["rental_start"]).dt.date, "rental_days": live["rental_days"].astype(int),
        "price_per_day": price, "total_price": np.round(price * live["rental_days"], 2), "currency": "GBP",
        "model_version": version, "features_as_of": as_of, "feature_age_s": (quoted - as_of).dt.total_seconds(),
        "degraded": False, "cold_start": live["bookings_30d"].isna().to_numpy(), "latency_ms": 2.0,
        "kafka_partition": 0, "kafka_offset": np.arange(len(live)),
    })  # fmt: skip
    for name in predictor.feature_names:
        values = live[name]
        if pd.api.types.is_datetime64_any_dtype(values):
            values = values.map(lambda t: None if pd.isna(t) else t.isoformat())
        elif isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object:
            values = values.astype(object).where(values.notna(), None).map(lambda v: None if v is None else str(v))
        else:
            values = values.astype("float64")
        quotes[f"f_{name}"] = values.to_numpy()
    outcomes = pd.DataFrame({
        "request_id": ids, "quoted_at": quoted, "item_id": quotes["item_id"], "customer_id": quotes["customer_id"],
        "category": None, "model_version": version, "rental_days": quotes["rental_days"], "price_per_day": price,
        "window_end": quoted + pd.Timedelta(minutes=15), "closed_at": quoted + pd.Timedelta(minutes=16),
        "late_quote": False, "booked": True, "booking_id": live["booking_id"].astype(str), "booked_at": quoted,
        "paid_per_day": live["price_per_day"].astype(float), "cancelled": False, "booked_any": True,
        "paid_any_per_day": live["price_per_day"].astype(float), "bookings_in_window": 1,
    })  # fmt: skip
    return quotes, outcomes


def write_log(settings: Settings, quotes: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    """The frames as the prediction log's tables, through the log's own writer."""
    from monitoring.log.store import write_parts

    def rows(frame: pd.DataFrame) -> list[dict]:
        out = frame.copy()
        for column in out.columns:
            if isinstance(out[column].dtype, pd.DatetimeTZDtype):
                out[column] = out[column].dt.as_unit("us").astype("int64")  # the log's microseconds
        out["quote_date"] = frame["quoted_at"].dt.strftime("%Y-%m-%d")
        records = out.to_dict("records")
        for r in records:
            for k, v in r.items():
                if isinstance(v, float) and np.isnan(v):
                    r[k] = None
        return records

    write_parts(settings, 1, "quotes", rows(quotes))
    write_parts(settings, 1, "outcomes", rows(outcomes))


def build(data_dir: Path, base: Settings, items: int = 600, bookings: int = 60_000,
          scenarios: tuple[str, ...] = SCENARIOS) -> MonitorWorld:  # fmt: skip
    """Train the champion on the unshifted platform up to T0, then make each scenario's log."""
    from mlflow import MlflowClient

    from training.predictor.price_predictor import PricePredictor
    from training.train import run_training

    settings = Settings(data_dir=data_dir / "trained", REDIS_URL=base.redis_url, MLFLOW_TRACKING_URI=None,
                        KAFKA_BOOTSTRAP_SERVERS=base.kafka_bootstrap_servers, kafka_port=base.kafka_port, **FAST)  # fmt: skip
    history = _history("none", items, bookings)
    frames = {"none": _features(settings, history)}
    # Training sees the bookings before T0 only; the offline store has every feature row, and
    # the as-of join reads none written after a booking.
    from streaming.history.tables import History, write_history

    before = history.bookings[history.bookings["event_time"] < pd.Timestamp(T0)]
    past = settings.model_copy(update={"history_dir_env": data_dir / "history-before-t0"})
    write_history(History(history.items, history.customers, before), past.history_dir)
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: the environment is put back after.
    with patch.dict(os.environ), redirect_stdout(sys.stderr):
        version = run_training(past).version
    MlflowClient(settings.mlflow_tracking_uri).set_registered_model_alias(
        settings.registered_model_name, settings.serving_alias, version)  # fmt: skip
    predictor = PricePredictor.from_registry(settings, version=version)
    quotes, outcomes = {}, {}
    for k, name in enumerate(scenarios):
        if name not in frames:
            other = settings.model_copy(update={"data_dir": data_dir / name})
            frames[name] = _features(other, _history(name, items, bookings))
            shutil.rmtree(other.offline_dir, ignore_errors=True)
        quotes[name], outcomes[name] = _log_frames(frames[name], predictor, version, seed=k)
    return MonitorWorld(settings, version, quotes, outcomes)
