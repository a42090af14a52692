"""`rental train --reproduce RUN_ID`: rebuild a run's training set and model from what it logged,
and compare the rebuilt model's prices with the logged model's on the validation rows.

The run's ``lineage.json`` gives the settings, seeds, engine and data window. Before anything is
built the code (commit, dirty diff), the lock file, the libraries and the Feast service's
definition are compared with the run's; after the set is rebuilt (from the current history, cut
to the run's time window, so a history that has only grown since still gives the same rows) its
digest is compared too. Any difference stops the reproduction with what differs, unless
``force``, which goes on and reports each difference as a warning.

The reproduction logs its own MLflow run in the run's experiment, tagged ``reproduction.of``,
with the comparison's figures and the rebuilt inputs' lineage; it logs no model, registers no
version and never touches an alias.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markup import escape

from rental.progress import progress_bar
from rental.settings import Settings
from streaming.feature_store import FEATURE_SERVICE, feature_store
from training.dataset import LABEL, TrainingSet, build_training_set
from training.feature_spec import TrainingDataError, service_spec
from training.fit import fit, time_split
from training.lineage import (
    Difference,
    Lineage,
    LineageError,
    current_environment,
    differences,
    history_sha256,
    log_lineage,
    read_lineage,
    restore_settings,
)
from training.predictor.price_predictor import PricePredictor
from training.tracking import use_tracking

# Largest relative price difference still called a match. Measured: a rebuilt model's prices are
# bit for bit the logged model's at 1, 2 and 4 threads, across thread counts too (XGBoost's hist
# sums each histogram in a fixed order); the bound leaves room for a few float32 ulps (~6e-8
# each) from another CPU's instruction set, and is far below any real change (a different tree
# moves prices by 1e-3 and more).
RELATIVE_TOLERANCE = 1e-6

Step = Callable[[str], None]


class ReproductionRefused(LineageError):
    """The logged inputs are no longer available as they were: the message lists what differs."""

    def __init__(self, run_id: str, found: list[Difference]):
        self.differences = found
        lines = "\n".join(f"  - {d}" for d in found)
        super().__init__(
            f"run {run_id} cannot be rebuilt as it was logged:\n{lines}\n"
            "check out the run's commit and restore its data, or pass --force to rebuild anyway"
        )


@dataclass(frozen=True)
class Comparison:
    rows: int
    max_abs_diff: float
    max_rel_diff: float
    equal_share: float  # rows whose two prices are bit for bit equal
    logged_mae: float
    rebuilt_mae: float
    tolerance: float = RELATIVE_TOLERANCE

    @property
    def verdict(self) -> str:
        if self.equal_share == 1.0:
            return "exact"
        return "within tolerance" if self.max_rel_diff <= self.tolerance else "differs"

    @property
    def matches(self) -> bool:
        return self.verdict != "differs"

    def metrics(self) -> dict[str, float]:
        return {"reproduction_rows": self.rows, "reproduction_max_abs_diff": self.max_abs_diff,
                "reproduction_max_rel_diff": self.max_rel_diff, "reproduction_equal_share": self.equal_share,
                "logged_model_mae": self.logged_mae, "rebuilt_model_mae": self.rebuilt_mae,
                "reproduction_tolerance": self.tolerance}  # fmt: skip


def compare(logged: np.ndarray, rebuilt: np.ndarray, actual: np.ndarray) -> Comparison:
    """The two models' prices on the same rows, and each one's MAE against what was paid."""
    logged, rebuilt, actual = (np.asarray(a, dtype=float) for a in (logged, rebuilt, actual))
    if len(logged) == 0:
        return Comparison(0, 0.0, 0.0, 1.0, float("nan"), float("nan"))
    diff = np.abs(logged - rebuilt)
    return Comparison(
        rows=len(logged),
        max_abs_diff=float(diff.max()),
        max_rel_diff=float((diff / np.maximum(np.abs(logged), np.finfo(float).tiny)).max()),
        equal_share=float(np.mean(logged == rebuilt)),
        logged_mae=float(np.mean(np.abs(logged - actual))),
        rebuilt_mae=float(np.mean(np.abs(rebuilt - actual))),
    )


@dataclass
class Reproduction:
    of_run: str
    run_id: str  # the reproduction's own run
    comparison: Comparison
    best_iteration: tuple[int | None, int]  # logged, rebuilt
    warnings: list[Difference] = field(default_factory=list)  # differences gone past with force
    notes: list[str] = field(default_factory=list)  # what differs without changing the rebuild


def in_window(data: TrainingSet, start: str, end: str) -> TrainingSet:
    """The rows of the run's time window: later bookings of a grown history are left out."""
    times = pd.to_datetime(data.frame["event_time"], utc=True)
    inside = ((times >= pd.Timestamp(start)) & (times <= pd.Timestamp(end))).to_numpy()
    return TrainingSet(data.frame[inside].reset_index(drop=True), data.service, data.engine)


def logged_predictor(client: MlflowClient, settings: Settings, run_id: str) -> PricePredictor:
    """The model the run registered (a run logs its model only as a registered version)."""
    versions = client.search_model_versions(f"name='{settings.registered_model_name}' and run_id='{run_id}'")
    if not versions:
        raise LineageError(f"run {run_id} has no version of {settings.registered_model_name!r} to compare with")
    return PricePredictor.from_registry(settings, version=versions[0].version)


def _data_differences(lineage: Lineage, data: TrainingSet) -> list[Difference]:
    logged, found = lineage.data, []
    if logged["digest"] != data.digest:
        found.append(Difference("data.digest", logged["digest"], data.digest, blocking=True))
    if logged["rows"] != len(data.frame):
        window = f"data.rows from {logged['start']} to {logged['end']}"
        found.append(Difference(window, logged["rows"], len(data.frame), blocking=True))
    return found


def _history_notes(lineage: Lineage, settings: Settings) -> list[str]:
    now = history_sha256(settings.history_dir)
    changed = [name for name, sha in lineage.data["history"].items() if now.get(name) != sha]
    if not changed:
        return []
    return [f"history files changed since the run ({', '.join(changed)}): the rows of its window decide"]


def reproduce(settings: Settings, run_id: str, force: bool = False, environment: dict | None = None,
              step: Step = lambda _: None) -> Reproduction:  # fmt: skip
    """Rebuild ``run_id`` and compare; ``environment``: the current code, lock, libraries and
    Feast definition (default: as they are now, ``lineage.current_environment``)."""
    use_tracking(settings)
    client = MlflowClient()
    try:
        logged_run = client.get_run(run_id)
    except MlflowException:
        raise LineageError(f"no run {run_id} in {settings.mlflow_tracking_uri}") from None
    step("reading the run's lineage")
    lineage = read_lineage(client, run_id)
    rebuilt_settings, notes = restore_settings(settings, lineage.settings)
    spec = service_spec(feature_store(settings), FEATURE_SERVICE)
    found = differences(lineage.environment, environment or current_environment(settings, spec))
    notes += [f"{d} (identifies the file; the service's definition is compared)" for d in found if not d.blocking]
    notes += _history_notes(lineage, settings)
    blocking = [d for d in found if d.blocking]
    if blocking and not force:
        raise ReproductionRefused(run_id, blocking)

    step("rebuilding the training set (the run's window)")
    data = in_window(build_training_set(rebuilt_settings, lineage.engine), lineage.data["start"], lineage.data["end"])
    data_found = _data_differences(lineage, data)
    if data_found and not force:
        raise ReproductionRefused(run_id, data_found)
    blocking += data_found
    split = time_split(data.frame, rebuilt_settings)
    step("boosting")
    fitted = fit(data, split, rebuilt_settings)
    step("comparing with the logged model")
    valid = data.frame[split.valid]
    logged = logged_predictor(client, settings, run_id).predict(valid)
    comparison = compare(logged, PricePredictor(fitted.booster, fitted.spec).predict(valid), valid[LABEL])
    best = logged_run.data.params.get("best_iteration")
    result = Reproduction(run_id, "", comparison, (None if best is None else int(best), fitted.best_iteration),
                          blocking, notes)  # fmt: skip

    step("logging the reproduction to MLflow")
    mlflow.set_experiment(experiment_id=logged_run.info.experiment_id)
    with mlflow.start_run(run_name=f"reproduce-{run_id[:8]}") as run:
        log_lineage(data, fitted, rebuilt_settings)
        mlflow.log_params({"engine": data.engine, "data.digest": data.digest, "data.rows": len(data.frame),
                           "best_iteration": fitted.best_iteration, "reproduction.of": run_id})  # fmt: skip
        mlflow.log_metrics(comparison.metrics())
        mlflow.set_tags({
            "reproduction.of": run_id, "reproduction.verdict": comparison.verdict,
            "reproduction.forced": str(bool(blocking)).lower(),
            "reproduction.differences": "; ".join(str(d) for d in blocking)[:5000],
        })  # fmt: skip
        mlflow.log_dict({"differences": [str(d) for d in blocking], "notes": notes}, "reproduction.json")
    result.run_id = run.info.run_id
    return result


def report(result: Reproduction) -> list[str]:
    """What `rental train --reproduce` prints (rich markup)."""
    c = result.comparison
    colour = {"exact": "green", "within tolerance": "green", "differs": "red"}[c.verdict]
    lines = [f"[yellow]warning:[/yellow] rebuilt despite {escape(str(d))}" for d in result.warnings]
    lines += [f"note: {escape(n)}" for n in result.notes]
    lines += [
        f"reproduction of run {result.of_run} (logged as run {result.run_id}): [{colour}]{c.verdict}[/{colour}]",
        f"  {c.rows:,} validation rows: {c.equal_share:.1%} equal, max abs difference {c.max_abs_diff:.3g} "
        f"(relative {c.max_rel_diff:.3g}; tolerance {c.tolerance:g} relative)",
        f"  MAE: logged model {c.logged_mae:.4f}, rebuilt model {c.rebuilt_mae:.4f}; "
        f"boosting rounds kept: logged {_rounds(result.best_iteration[0])}, rebuilt {result.best_iteration[1] + 1}",
    ]
    return lines


def _rounds(best: int | None) -> str:
    return "?" if best is None else str(best + 1)


def reproduce_command(settings: Settings, run_id: str, force: bool, engine: str | None, console: Console) -> int:
    """`rental train --reproduce`'s exit code: 0 a match (exact or within the tolerance), 1 prices
    that differ beyond it, 2 a reproduction refused or impossible (the message says why)."""
    if engine is not None:
        console.print("[red]cannot reproduce:[/red] the run's own engine is used; drop --engine")
        return 2
    # MLflow's own download bars (the lineage, the logged model) would break through the progress bar
    os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")
    try:
        with progress_bar(console) as bar:
            task = bar.add_task("starting", total=None)
            result = reproduce(settings, run_id, force, step=lambda name: bar.update(task, description=name))
            bar.update(task, description="done", total=1, completed=1)
    except TrainingDataError as exc:
        console.print(f"[red]cannot reproduce:[/red] {escape(str(exc))}")
        return 2
    for line in report(result):
        console.print(line)
    return 0 if result.comparison.matches else 1
