"""The price of a quote from a registered model version: what the pricing service calls.

Everything needed to rebuild the model's input travels with the registered version (the
booster and ``model_spec.json`` inside its MLflow model folder), so a predictor depends on the
registry alone. ``predict`` encodes rows with precomputed category codes and runs XGBoost's
in-place prediction on a float32 array (``DensePredictor``, its C API called directly): a
fraction of a millisecond for one row, and an unseen category or a missing feature (a
cold-start item) is a NaN the trees route, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import xgboost as xgb
from mlflow import MlflowClient

from rental.settings import Settings
from training.predictor.dense import DensePredictor
from training.predictor.spec import SPEC_FILE, ModelSpec

BOOSTER_FILE = "booster.ubj"
REQUEST_INPUTS = ("rental_start", "rental_days", "quote_time")


@dataclass
class PricePredictor:
    booster: xgb.Booster
    spec: ModelSpec
    version: str | None = None  # the registry's version, when loaded from it
    run_id: str | None = None

    def __post_init__(self):
        self._margins = DensePredictor(self.booster)

    @classmethod
    def from_dir(cls, path: Path, version: str | None = None, run_id: str | None = None) -> PricePredictor:
        """A model folder as logged by training (the MLflow model's ``artifacts/``)."""
        path = Path(path)
        booster = xgb.Booster()
        booster.load_model(path / BOOSTER_FILE)
        booster.set_param({"nthread": 1})  # one quote at a time: no thread start-up per call
        return cls(booster, ModelSpec.from_json((path / SPEC_FILE).read_text()), version, run_id)

    @classmethod
    def from_registry(cls, settings: Settings, alias: str | None = None, version: str | int | None = None):
        """The version behind ``alias`` (default: the serving alias) or a given ``version``."""
        from rental.storage import export_s3_endpoint

        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        export_s3_endpoint(settings.s3_endpoint_url)  # artifacts on an S3-compatible server (RENTAL_STORAGE_URI)
        client = MlflowClient()
        name = settings.registered_model_name
        if version is None:
            found = client.get_model_version_by_alias(name, alias or settings.serving_alias)
        else:
            found = client.get_model_version(name, str(version))
        local = mlflow.artifacts.download_artifacts(f"models:/{name}/{found.version}")
        return cls.from_dir(Path(local) / "artifacts", version=str(found.version), run_id=found.run_id)

    @property
    def feature_service_name(self) -> str:
        return self.spec.feature_service

    @property
    def feast_features(self) -> list[str]:
        """Feature references (view:feature), the service's order: what to fetch from Feast."""
        return list(self.spec.feast_features)

    @property
    def feature_names(self) -> list[str]:
        """The same features by name, as ``get_online_features(...).to_dict()`` keys them."""
        return self.spec.feature_names

    def predict(self, rows: Mapping[str, Sequence] | Sequence[Mapping]) -> np.ndarray:
        """Price per day of each row. ``rows``: columns (a dict of lists, e.g. Feast's
        ``to_dict()`` plus rental_start, rental_days, quote_time; or a DataFrame), or a list of
        dicts. A feature that is absent or None is missing, not an error."""
        columns = _columns(rows)
        absent = [k for k in REQUEST_INPUTS if k not in columns]
        if absent:
            raise ValueError(f"each row needs {list(REQUEST_INPUTS)}; missing {absent}")
        return self.spec.to_price(self._margins(self.spec.matrix(_MissingAsNone(columns))))


class _MissingAsNone(dict):
    """Columns where an absent feature reads as all-missing."""

    def __init__(self, columns: Mapping):
        super().__init__(columns)
        self._n = len(columns["quote_time"])

    def __missing__(self, key):
        return [None] * self._n

    def __contains__(self, key) -> bool:  # time features: absent means missing too
        return True


def _columns(rows) -> Mapping:
    if isinstance(rows, Mapping) or hasattr(rows, "columns"):
        return rows
    rows = list(rows)
    if not rows:  # no rows: no prices, as for columns of length zero
        return {key: [] for key in REQUEST_INPUTS}
    keys = {k for row in rows for k in row}
    return {k: [row.get(k) for row in rows] for k in keys}
