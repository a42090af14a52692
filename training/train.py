"""One training run, end to end: set, split, fit, evaluate, log to MLflow, register, gate.

Returns what happened, with the time each stage took (the benchmark reads them).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from rental.settings import Settings
from training import evaluate, plots
from training.attributes import evaluate_attributes
from training.dataset import LABEL, TrainingSet, build_training_set
from training.feature_spec import TrainingDataError
from training.fit import Fitted, fit, predict_price, time_split
from training.gate import GateDecision
from training.lineage import log_lineage
from training.registry import gate, log_and_register, promote
from training.safe_names import metric_safe
from training.tracking import use_tracking

Step = Callable[[str], None]  # told the name of each stage as it starts
# Wraps a stage's function before it is called (an orchestrator makes each one a task of its own).
Stage = Callable[[str, Callable], Callable]


@dataclass
class TrainingResult:
    run_id: str
    version: str
    decision: GateDecision
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    best_iteration: int = -1  # boosting rounds kept, less one


@dataclass
class Evaluation:
    predictions: dict[str, np.ndarray]  # "model", each baseline, "noise_floor" if known
    metrics: dict[str, float]
    best_baseline: tuple[str, float]


def evaluation(fitted: Fitted, train: pd.DataFrame, valid: pd.DataFrame) -> Evaluation:
    predictions = {"model": predict_price(fitted.booster, fitted.spec, valid)}
    predictions |= evaluate.baselines(train, valid, fitted.spec)
    floor = evaluate.noise_floor(valid)
    if floor is not None:
        predictions["noise_floor"] = floor
    actual = valid[LABEL].to_numpy(float)
    scores = {name: evaluate.metrics(actual, p) for name, p in predictions.items()}
    flat = {f"{m}" if name == "model" else f"{name}_{m}": v for name, s in scores.items() for m, v in s.items()}
    best = min(((n, s["mae"]) for n, s in scores.items() if n not in ("model", "noise_floor")), key=lambda x: x[1])
    flat |= {"best_baseline_mae": best[1]}
    return Evaluation(predictions, flat, best)


def _log_plots(fitted: Fitted, valid: pd.DataFrame, ev: Evaluation) -> None:
    shown = {k: v for k, v in ev.predictions.items() if k in ("model", ev.best_baseline[0], "noise_floor")}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        plots.predicted_vs_actual(
            valid[LABEL].to_numpy(float), ev.predictions["model"], out / "predicted_vs_actual.png"
        )
        by_category = evaluate.by_group(valid, ev.predictions, valid["item_category"])
        plots.error_by(by_category[[*shown, "bookings"]], "MAE by category", "category", out / "mae_by_category.png")
        by_month = evaluate.by_group(valid, shown, pd.to_datetime(valid["rental_start"]).dt.month)
        plots.error_by(by_month, "MAE by month of rental start", "month", out / "mae_by_month.png", kind="line")
        plots.feature_importance(fitted.booster, out / "feature_importance.png")
        mlflow.log_artifacts(tmp, "plots")
        by_category.to_csv(out / "mae_by_category.csv")
        mlflow.log_artifact(str(out / "mae_by_category.csv"), "evaluation")
    for category, row in by_category.iterrows():  # a category is the catalogue's text: made safe first
        name = metric_safe(str(category))
        mlflow.log_metrics({f"mae_{name}": row["model"], f"mae_{name}_{ev.best_baseline[0]}": row[ev.best_baseline[0]]})


def _log_run_inputs(data: TrainingSet, fitted: Fitted, split, settings: Settings) -> None:
    frame = data.frame
    mlflow.log_params({f"xgb.{k}": v for k, v in fitted.params.items()})
    mlflow.log_params(fitted.engine)  # fit.engine, fit.workers, fit.threads: where boosting ran
    mlflow.log_params({
        "feature_service": data.service.name, "engine": data.engine, "target": fitted.spec.target,
        "best_iteration": fitted.best_iteration, "validation_start": str(split.valid_start.date()),
        "early_stopping_start": str(split.stop_start.date()), "validation_weeks": settings.train_validation_weeks,
        "early_stopping_weeks": settings.train_early_stopping_weeks, "gate_margin": settings.train_gate_margin,
        "data.digest": data.digest, "data.rows": len(frame), "data.train_rows": int(split.train.sum()),
        "data.valid_rows": int(split.valid.sum()), "data.history_dir": str(settings.history_dir),
        "data.start": str(frame["event_time"].min()), "data.end": str(frame["event_time"].max()),
    })  # fmt: skip
    mlflow.log_dict({"feature_service": data.service.name, "feast_features": data.service.feature_refs,
                     "model_inputs": list(fitted.spec.inputs), "categorical_levels": fitted.spec.levels},
                    "features.json")  # fmt: skip
    log_lineage(data, fitted, settings)  # code, lock, data, Feast, seeds, settings: `rental train --reproduce`


def _attributes_line(metrics: dict[str, float]) -> str:
    if not metrics:
        return ""
    return (f"\n(attributes only vs brand median on {metrics['attributes_only_items_held_out']:,.0f} held-out items: "
            f"MAE {metrics['attributes_only_mae']:.3f} against {metrics['attributes_only_brand_median_mae']:.3f})")  # fmt: skip


def run_training(settings: Settings, engine: str | None = None, step: Step = lambda _: None,
                 rounds: Callable[[int], None] | None = None,
                 stage: Stage = lambda _name, function: function) -> TrainingResult:  # fmt: skip
    timings: dict[str, float] = {}
    started, cpu = time.perf_counter(), time.process_time()
    step("building the training set (point-in-time join)")
    data = stage("training set", build_training_set)(settings, engine)
    timings["build_s"] = time.perf_counter() - started
    timings["build_cpu_s"] = time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    step("attributes only against the brand median (held-out items)")
    attributes = evaluate_attributes(data.frame, settings.train_max_category_levels, settings.seed,
                                     settings.train_nthread)  # fmt: skip
    try:
        split = time_split(data.frame, settings)
    except TrainingDataError as exc:  # a split by item needs no time span: its answer still counts
        raise TrainingDataError(f"{exc}{_attributes_line(attributes)}") from None
    step("boosting")
    fitted = stage("train", fit)(data, split, settings, rounds)
    step("baselines and evaluation")
    train, valid = data.frame[split.train], data.frame[split.valid]
    ev = stage("evaluate", evaluation)(fitted, train, valid)
    ev.metrics |= attributes
    timings["train_s"] = time.perf_counter() - started
    timings["train_cpu_s"] = time.process_time() - cpu  # of all threads: wall x 2 at best on 2 cores

    started = time.perf_counter()
    step("logging to MLflow")
    use_tracking(settings)
    with mlflow.start_run() as run:
        _log_run_inputs(data, fitted, split, settings)
        mlflow.log_metrics(ev.metrics)
        _log_plots(fitted, valid, ev)
        from monitoring.reference import log_reference  # what monitoring checks this model's quotes against

        log_reference(valid, ev.predictions["model"], fitted.spec.feature_names, settings.monitor_reference_rows)
        step("registering and gating")
        version = stage("register", log_and_register)(fitted.booster, fitted.spec, valid, settings)
        decision = stage("gate", gate)(settings, version, ev.metrics["mae"], ev.best_baseline, valid)
        if decision.promote:
            stage("promote", promote)(settings, version)
    timings["log_s"] = time.perf_counter() - started
    return TrainingResult(run.info.run_id, version, decision, ev.metrics, timings, fitted.best_iteration)
