"""The reference a model is checked against, travelling with it in MLflow.

``log_reference`` is called inside the training run: the held-out (validation) bookings, each
with the features it was priced from, the model's price and the price paid, in the prediction
log's own shape (``f_<feature>`` columns, ``price_per_day`` quoted, ``paid_per_day``), as
``monitoring/reference.parquet`` with ``monitoring/reference.json`` (the model's inputs) among
the run's artifacts. Held-out rows, because the errors of rows the model trained on are
smaller than any live quote's: a bound centred on them would fail an honest model.

A champion without that artifact (trained before it existed, or elsewhere) is checked against
its own first ``monitor_fallback_windows`` windows with enough rows after its first quote:
those windows are gathered under ``<monitor_dir>/references/<version>/`` and judged by nothing;
later windows are judged against them.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.checks.frames import FEATURE_PREFIX, outcome_columns
from rental.settings import Settings

ARTIFACT_DIR = "monitoring"
FRAME_FILE = "reference.parquet"
META_FILE = "reference.json"
LOG_COLUMNS = ("quoted_at", "rental_start", "rental_days", "price_per_day", "paid_per_day", "booked")


@dataclass
class Reference:
    model_version: str
    source: str  # "mlflow" (logged with the model) or "first windows" (the fallback rule)
    quotes: pd.DataFrame  # the log's quote shape
    inputs: list[str]  # the model's feature names, as the log's f_<name> columns carry them

    @property
    def booked(self) -> pd.DataFrame:
        return outcome_columns(self.quotes)


def reference_frame(frame: pd.DataFrame, predictions: np.ndarray, features: list[str], label: str = "price_per_day",
                    quote_time: str = "quote_time", rows: int = 20_000, seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Training rows (features by Feast name, the label, the quote time) in the log's shape."""
    out = pd.DataFrame({FEATURE_PREFIX + name: frame[name].to_numpy() for name in features if name in frame})
    out["quoted_at"] = pd.to_datetime(frame[quote_time], utc=True).to_numpy()
    out["rental_start"] = pd.to_datetime(frame["rental_start"]).to_numpy()
    out["rental_days"] = frame["rental_days"].to_numpy()
    out["price_per_day"] = np.asarray(predictions, dtype=float)
    out["paid_per_day"] = frame[label].to_numpy(float)
    out["booked"] = True
    if len(out) > rows:
        out = out.sample(rows, random_state=seed).sort_values("quoted_at")
    return out.reset_index(drop=True)


def log_reference(frame: pd.DataFrame, predictions: np.ndarray, features: list[str], rows: int = 20_000) -> None:
    """Inside an active MLflow run: the held-out rows and their prices as the run's reference."""
    import mlflow

    reference = reference_frame(frame, predictions, features, rows=rows)
    for column in reference.columns:  # categoricals as their text, as the log writes them
        if isinstance(reference[column].dtype, pd.CategoricalDtype):
            reference[column] = reference[column].astype(object)
    with tempfile.TemporaryDirectory() as tmp:
        reference.to_parquet(Path(tmp) / FRAME_FILE, index=False)
        (Path(tmp) / META_FILE).write_text(json.dumps({"inputs": list(features), "rows": len(reference)}))
        mlflow.log_artifacts(tmp, ARTIFACT_DIR)


def _from_dir(folder: Path, version: str, source: str) -> Reference | None:
    frame, meta = folder / FRAME_FILE, folder / META_FILE
    if not frame.exists() or not meta.exists():
        return None
    inputs = json.loads(meta.read_text())["inputs"]
    return Reference(version, source, pd.read_parquet(frame), inputs)


def fallback_dir(settings: Settings, model_version: str) -> Path:
    return settings.monitor_dir / "references" / model_version


def load_reference(settings: Settings, model_version: str) -> Reference | None:
    """The model's logged reference, else its gathered first windows, else None (only the gathered
    windows when ``monitor_reference`` is live)."""
    if settings.monitor_reference == "live":
        return _from_dir(fallback_dir(settings, model_version), model_version, "first windows")
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        client = MlflowClient(settings.mlflow_tracking_uri)
        run_id = client.get_model_version(settings.registered_model_name, model_version).run_id
        with tempfile.TemporaryDirectory() as tmp:
            local = download_artifacts(run_id=run_id, artifact_path=ARTIFACT_DIR, dst_path=tmp,
                                       tracking_uri=settings.mlflow_tracking_uri)  # fmt: skip
            found = _from_dir(Path(local), model_version, "mlflow")
        if found is not None:
            return found
    except (MlflowException, OSError):
        pass  # no such version or no artifact: the fallback rule
    return _from_dir(fallback_dir(settings, model_version), model_version, "first windows")


def gather_fallback(settings: Settings, model_version: str, quotes: pd.DataFrame, outcomes: pd.DataFrame,
                    windows_so_far: int) -> int:  # fmt: skip
    """Add a window's quotes (with their outcomes) to the model's fallback reference; when it has
    ``monitor_fallback_windows`` windows it is written as the reference. Returns windows gathered."""
    folder = fallback_dir(settings, model_version)
    pending = folder / "pending.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    joined = quotes.merge(outcomes[["request_id", "booked", "paid_per_day"]], on="request_id", how="left")
    if pending.exists():
        joined = pd.concat([pd.read_parquet(pending), joined], ignore_index=True)
    windows = windows_so_far + 1
    if windows >= settings.monitor_fallback_windows:
        inputs = sorted(c.removeprefix(FEATURE_PREFIX) for c in joined.columns if c.startswith(FEATURE_PREFIX))
        joined.to_parquet(folder / FRAME_FILE, index=False)
        (folder / META_FILE).write_text(json.dumps({"inputs": inputs, "rows": len(joined)}))
        pending.unlink(missing_ok=True)
    else:
        joined.to_parquet(pending, index=False)
    return windows
