"""The registry step: log the candidate as a version of ``rental-price`` and move ``champion``
only through the gate, with the decision and its reasons on the run and on the version."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from rental.settings import Settings
from training.dataset import LABEL
from training.gate import GateDecision, decide
from training.predictor.price_predictor import BOOSTER_FILE, REQUEST_INPUTS, PricePredictor
from training.predictor.spec import SPEC_FILE, ModelSpec
from training.pyfunc import PriceModel


def input_example(rows: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """A few complete rows as the service receives them: Feast's features and the request; times
    are naive UTC, as MLflow's schema enforcement requires (the predictor reads naive as UTC)."""
    # The most complete rows: a catalogue may leave a column empty on every row (no retail
    # price), and zero example rows once made the predictor's C call fail.
    columns = rows[spec.feature_names + list(REQUEST_INPUTS)]
    order = np.argsort(columns.isna().sum(axis=1).to_numpy(), kind="stable")
    example = columns.iloc[order[:3]].copy()
    # A feature none of them has is left out: the predictor reads an absent feature as missing.
    example = example.drop(columns=[c for c in spec.feature_names if example[c].isna().all()])
    example["rental_start"] = pd.to_datetime(example["rental_start"]).dt.strftime("%Y-%m-%d")
    for column in example.columns:
        values = example[column]
        if isinstance(values.dtype, pd.CategoricalDtype | pd.ArrowDtype) or values.dtype == object:
            example[column] = values.astype(object).where(values.notna(), None)
            example[column] = example[column].map(lambda v: v if v is None else str(v))
        elif isinstance(values.dtype, pd.DatetimeTZDtype):  # MLflow schemas hold naive times (UTC here)
            example[column] = values.dt.tz_convert("UTC").dt.tz_localize(None)
        elif isinstance(values.dtype, pd.Int64Dtype):
            example[column] = values.astype("float64" if values.isna().any() else "int64")
    return example.reset_index(drop=True)


def log_and_register(booster: xgb.Booster, spec: ModelSpec, valid: pd.DataFrame, settings: Settings) -> str:
    """The model under the active run (booster + spec as pyfunc artifacts), registered; its version."""
    example = input_example(valid, spec)
    with tempfile.TemporaryDirectory() as tmp:
        booster.save_model(Path(tmp) / BOOSTER_FILE)
        (Path(tmp) / SPEC_FILE).write_text(spec.to_json())
        predictions = PricePredictor(booster, spec).predict(example)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=PriceModel(),
            artifacts={BOOSTER_FILE: str(Path(tmp) / BOOSTER_FILE), SPEC_FILE: str(Path(tmp) / SPEC_FILE)},
            signature=infer_signature(example, predictions),
            input_example=example,
            registered_model_name=settings.registered_model_name,
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"xgboost=={xgb.__version__}", "pandas", "numpy"],
        )
    return str(info.registered_model_version)


def champion_mae(settings: Settings, valid: pd.DataFrame) -> tuple[tuple[str, float] | None, str | None]:
    """The current champion's (version, MAE) on these rows (None when there is no champion), and
    why it could not be scored, if so (its MAE is then NaN)."""
    try:
        champion = PricePredictor.from_registry(settings, alias=settings.serving_alias)
    except MlflowException:
        return None, None
    version = champion.version or "?"
    missing = [c for c in champion.feature_names if c not in valid.columns]
    if missing:  # a champion of another feature service cannot be scored here: it is kept
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return (version, float("nan")), (
            f"it reads feature service {champion.feature_service_name!r}, whose features {shown} this set lacks"
        )
    predicted = champion.predict(valid)
    return (version, float(np.mean(np.abs(predicted - valid[LABEL].to_numpy(float))))), None


def promote(settings: Settings, version: str) -> None:
    """Move the serving alias to ``version``: called only when ``gate`` said so."""
    MlflowClient().set_registered_model_alias(settings.registered_model_name, settings.serving_alias, version)


def gate(
    settings: Settings, version: str, candidate_mae: float, best_baseline: tuple[str, float], valid: pd.DataFrame
) -> GateDecision:
    """The gate's decision for ``version``, recorded on the active run and on the version before
    any alias moves (a step of its own, so an orchestrator shows gate and promotion apart)."""
    champion, unscored = champion_mae(settings, valid)
    decision = decide(candidate_mae, best_baseline, settings.train_gate_margin, champion, unscored)
    client = MlflowClient()
    name = settings.registered_model_name
    client.set_model_version_tag(name, version, "gate.promoted", str(decision.promote).lower())
    client.set_model_version_tag(name, version, "gate.reasons", json.dumps(decision.reasons))
    mlflow.set_tags({"gate.promoted": str(decision.promote).lower(), "gate.reasons": "; ".join(decision.reasons)})
    mlflow.log_metric("gate_promoted", float(decision.promote))
    if champion is not None and np.isfinite(champion[1]):
        mlflow.log_metric("champion_mae", champion[1])
    shown = None if champion is None else {"version": champion[0], "mae": champion[1] if unscored is None else None}
    mlflow.log_dict(decision.as_dict() | {"version": version, "champion": shown}, "gate.json")
    return decision
