"""Training figures: ``python -m tests.benchmarks.train_bench`` (``make bench-train``).

A simulated history of a million bookings over 20,000 items (Zipf-skewed popularity, as the
simulator draws it: a few hot items, a long tail) is backfilled into its own offline store once
and cached under the temp dir. Then one training run (``rental train``: point-in-time set,
XGBoost, evaluation, MLflow logging, registry and gate) runs in a child process, so its peak
memory is measured alone. Prints ONE JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from rental.settings import Settings, get_settings

stderr = Console(stderr=True)
END = date(2026, 6, 1)
REDIS_DB = 11


def _settings(data_dir: Path) -> Settings:
    base = get_settings()
    return Settings(data_dir=data_dir, REDIS_URL=base.redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}")


def prepare(items: int, bookings: int, seed: int) -> Path:
    """The history and its offline store, built once per size and seed."""
    from streaming.backfill import run_backfill
    from streaming.feature_store.store import apply
    from streaming.history.tables import write_history
    from streaming.simulator.history import simulate
    from streaming.simulator.world import SimulationConfig

    world = Path(tempfile.gettempdir()) / f"rental-train-bench-{seed}-{items}-{bookings}"
    if (world / "ready").exists():
        stderr.print(f"reusing {world}")
        return world
    settings = _settings(world)
    stderr.print(f"simulating {items:,} items, about {bookings:,} bookings ...")
    history = simulate(SimulationConfig(seed=seed, items=items, bookings=bookings, end=END))
    write_history(history, settings.history_dir)
    top = history.bookings["item_id"].value_counts()
    stderr.print(f"{len(history.bookings):,} bookings; busiest item {top.iloc[0]:,}, median item {int(top.median())}")
    stderr.print("backfilling the offline store (minutes; cached for the next run) ...")
    run_backfill(history, settings, as_of=pd.Timestamp(END, tz="UTC"))
    apply(settings)
    (world / "ready").touch()
    return world


def measure(world: Path) -> None:
    """One training run on the prepared world; prints its figures as JSON."""
    from training.train import run_training

    mlflow_dir = Path(tempfile.mkdtemp(prefix="train-bench-mlflow-"))
    # The defaults throughout (RENTAL_TRAIN_* / RENTAL_XGB_* still apply): what `rental train` runs.
    settings = _settings(world).model_copy(update={"mlflow_tracking_uri_env": f"sqlite:///{mlflow_dir / 'mlflow.db'}"})
    result = run_training(settings, step=lambda name: stderr.print(f"  {name} ..."))
    m = result.metrics
    print(json.dumps({
        "build_s": round(result.timings["build_s"], 1), "train_s": round(result.timings["train_s"], 1),
        "log_s": round(result.timings["log_s"], 1), "build_cpu_s": round(result.timings["build_cpu_s"], 1),
        "train_cpu_s": round(result.timings["train_cpu_s"], 1), "load_avg_1m": round(os.getloadavg()[0], 1),
        "mae": round(m["mae"], 4),
        "noise_floor_mae": round(m["noise_floor_mae"], 4), "best_baseline_mae": round(m["best_baseline_mae"], 4),
        "engine": settings.train_engine, "promoted": result.decision.promote,
        "best_iteration": result.best_iteration,
    }))  # fmt: skip


def main(
    items: int = typer.Option(20_000, help="Catalogue size."),
    bookings: int = typer.Option(1_000_000, help="About this many bookings."),
    seed: int = typer.Option(7, help="Simulator seed."),
    measure_world: Path | None = typer.Option(None, "--measure", hidden=True),
) -> None:
    if measure_world is not None:
        measure(measure_world)
        return
    world = prepare(items, bookings, seed)
    stderr.print("training (child process) ...")
    child = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.train_bench", "--measure", str(world)],
        stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    if child.returncode != 0:
        raise RuntimeError(f"the training run failed with exit code {child.returncode}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    rows = len(pd.read_parquet(world / "simulation" / "bookings.parquet", columns=["booking_id"]))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ratio = figures["mae"] / figures["noise_floor_mae"]
    below = 1 - figures["mae"] / figures["best_baseline_mae"]
    print(json.dumps({"bookings": rows, **figures, "peak_rss_mb": round(peak_rss_mb),
                      "mae_over_noise_floor": round(ratio, 3), "mae_below_best_baseline": round(below, 3)}))  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
