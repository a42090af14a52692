"""Reproducibility figures: ``python -m tests.benchmarks.reproduce_bench`` (``make bench-reproduce``).

On a simulated history (the demo's size by default, backfilled once and cached like
``train_bench``'s), the same training set is boosted twice at each of 1, 2 and 4 XGBoost
threads, and every model's validation prices are compared with the first single-threaded
model's: what ``training/reproduce.py``'s tolerance rests on. Then one real run (``rental train``
into a temporary MLflow) and its reproduction (``rental train --reproduce``), timed, with the
verdict. Prints ONE JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import tempfile
import time

import numpy as np
import typer

from tests.benchmarks.train_bench import _settings, prepare, stderr

THREADS = (1, 2, 4)


def main(
    items: int = typer.Option(2_000, help="catalogue size"),
    bookings: int = typer.Option(60_000, help="bookings to simulate"),
    seed: int = typer.Option(42, help="simulation seed"),
) -> None:
    from training.dataset import build_training_set
    from training.fit import fit, time_split
    from training.lineage import LineageError
    from training.predictor.price_predictor import PricePredictor
    from training.reproduce import RELATIVE_TOLERANCE, reproduce
    from training.train import run_training

    settings = _settings(prepare(items, bookings, seed))
    data = build_training_set(settings)
    split = time_split(data.frame, settings)
    valid = data.frame[split.valid]
    reference, figures = None, {}
    for threads in THREADS:
        for attempt in (1, 2):
            stderr.print(f"boosting with {threads} thread(s), attempt {attempt} ...")
            started = time.perf_counter()
            fitted = fit(data, split, settings.model_copy(update={"train_nthread": threads}))
            prices = PricePredictor(fitted.booster, fitted.spec).predict(valid)
            reference = prices if reference is None else reference
            diff = np.abs(prices - reference)
            figures[f"threads_{threads}_{attempt}"] = {
                "fit_s": round(time.perf_counter() - started, 2), "best_iteration": fitted.best_iteration,
                "max_abs_diff": float(diff.max()), "max_rel_diff": float((diff / reference).max()),
                "equal_share": float(np.mean(prices == reference)),
            }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        local = settings.model_copy(update={"mlflow_tracking_uri_env": f"sqlite:///{tmp}/mlflow.db"})
        stderr.print("one training run and its reproduction ...")
        started = time.perf_counter()
        run = run_training(local)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        try:
            got = reproduce(local, run.run_id)
            outcome = {"verdict": got.comparison.verdict, **got.comparison.metrics()}
        except LineageError as exc:  # e.g. a commit landed in between: said, not hidden
            outcome = {"verdict": "refused", "reason": str(exc)}
        reproduce_s = time.perf_counter() - started
    print(json.dumps({
        "items": items, "bookings": len(data.frame), "validation_rows": len(valid),
        "tolerance_rel": RELATIVE_TOLERANCE, "fits": figures,
        "train_s": round(train_s, 1), "reproduce_s": round(reproduce_s, 1), "reproduction": outcome,
    }))  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
