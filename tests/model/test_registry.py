"""Registry and gate against a real MLflow (SQLite in a temp dir), and the serving predictor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from training.predictor.price_predictor import PricePredictor
from training.train import run_training

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(world, tmp_path_factory):
    """A fresh registry; three candidates: medium, then weak, then strong."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    local = world.model_copy(update={"mlflow_tracking_uri_env": uri})
    medium = run_training(local.model_copy(update={"xgb_max_depth": 3, "xgb_num_boost_round": 40}))
    weak = run_training(local.model_copy(update={"xgb_max_depth": 2, "xgb_num_boost_round": 25}))
    strong = run_training(local)
    return local, medium, weak, strong


def _champion(settings) -> str:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return str(client.get_model_version_by_alias(settings.registered_model_name, settings.serving_alias).version)


def test_a_worse_candidate_is_not_champion_and_a_better_one_is(registry):
    settings, medium, weak, strong = registry
    assert medium.decision.promote, medium.decision.reasons
    assert not weak.decision.promote, weak.decision.reasons
    assert weak.metrics["mae"] > medium.metrics["mae"]
    assert strong.decision.promote and strong.metrics["mae"] <= medium.metrics["mae"], strong.decision.reasons
    assert _champion(settings) == strong.version
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(weak.run_id)
    assert run.data.tags["gate.promoted"] == "false" and "champion" in run.data.tags["gate.reasons"]
    version = client.get_model_version(settings.registered_model_name, weak.version)
    assert version.tags["gate.promoted"] == "false"
    assert run.data.params["data.digest"] == client.get_run(strong.run_id).data.params["data.digest"]
    assert run.data.tags["code.commit"] and run.data.params["feature_service"] == "rental_price_v1"


def test_the_champion_predicts_as_trained_for_a_frame_and_for_one_quote(registry, trained):
    settings, *_, strong = registry
    data, split, *_ = trained
    predictor = PricePredictor.from_registry(settings)
    assert predictor.version == strong.version and predictor.feature_service_name == "rental_price_v1"
    valid = data.frame[split.valid]
    prices = predictor.predict(valid)
    mae = float(np.mean(np.abs(prices - valid["price_per_day"].to_numpy())))
    assert mae == pytest.approx(strong.metrics["mae"], rel=1e-6)
    # one quote as the service assembles it: Feast's to_dict() columns plus the request
    row = valid.iloc[7]
    online = {name: [None if pd.isna(row[name]) else row[name]] for name in predictor.feature_names}
    quote = online | {"rental_start": [str(row["rental_start"])], "rental_days": [int(row["rental_days"])],
                      "quote_time": [row["quote_time"].to_pydatetime()]}  # fmt: skip
    assert predictor.predict(quote)[0] == pytest.approx(prices[7], rel=1e-6)


def test_cold_start_and_unseen_values_still_get_a_price(registry, trained):
    settings, *_ = registry
    data, split, *_ = trained
    predictor = PricePredictor.from_registry(settings, version=1)
    row = data.frame[split.valid].iloc[0]
    quote = {name: None for name in predictor.feature_names} | {
        "retail_price": 300.0, "brand_tier": "space_age", "item_category": "hat", "condition": "good",
        "rental_start": "2026-07-04", "rental_days": 3, "quote_time": row["quote_time"],
    }  # fmt: skip
    price = predictor.predict([quote])
    assert price.shape == (1,) and np.isfinite(price[0]) and price[0] > 0
    with pytest.raises(ValueError, match="quote_time"):
        predictor.predict([{"rental_start": "2026-07-04", "rental_days": 3}])
