"""The registered model as an MLflow pyfunc: ``mlflow.pyfunc.load_model`` and ``mlflow models
serve`` answer with the same ``PricePredictor`` the service uses, from the same files."""

from __future__ import annotations

from pathlib import Path

import mlflow

from training.predictor.price_predictor import BOOSTER_FILE, PricePredictor


class PriceModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.predictor = PricePredictor.from_dir(Path(context.artifacts[BOOSTER_FILE]).parent)

    def predict(self, context, model_input, params=None):
        return self.predictor.predict(model_input)
