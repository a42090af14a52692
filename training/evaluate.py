"""How good a price is: MAE, MAPE and RMSLE, beside baselines and the simulator's noise floor.

Baselines are what a pricing team would try first: one global median, the median of the
item's brand tier and category, and a linear model on log price. The noise floor is the error
of the true expected price (simulated data only): no model can beat it by more than chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.dataset import EXPECTED, LABEL
from training.predictor.spec import ModelSpec

GROUP = ["brand_tier", "item_category"]


def metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    if len(actual) == 0:  # no rows: no error to speak of, not a warning and a mean of nothing
        return {"mae": float("nan"), "mape": float("nan"), "rmsle": float("nan")}
    return {
        "mae": float(np.mean(np.abs(predicted - actual))),
        "mape": float(np.mean(np.abs(predicted - actual) / actual)),
        "rmsle": float(np.sqrt(np.mean((np.log1p(predicted) - np.log1p(actual)) ** 2))),
    }


def global_median(train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    return np.full(len(rows), float(train[LABEL].median()))


def group_median(train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """The median of the row's brand tier and category; of its category where the tier is
    unknown (a catalogue without tiers); the global median for a group training never saw."""
    medians = train.groupby(GROUP, observed=True)[LABEL].median().rename("_median")
    got = rows[GROUP].merge(medians, left_on=GROUP, right_index=True, how="left")["_median"]
    by_category = rows[GROUP[1]].astype(object).map(train.groupby(GROUP[1], observed=True)[LABEL].median())
    got = got.to_numpy(float)
    got = np.where(np.isnan(got), pd.to_numeric(by_category, errors="coerce").to_numpy(float), got)
    return np.where(np.isnan(got), float(train[LABEL].median()), got)


def linear(train: pd.DataFrame, rows: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Ridge on log price: one-hot categories, log retail price, the other inputs as numbers."""
    categorical = [c for c in spec.inputs if c in spec.levels or c == "start_month"]
    numeric = [c for c in spec.inputs if c not in categorical]

    def table(frame: pd.DataFrame) -> pd.DataFrame:
        x = pd.DataFrame(spec.matrix(frame), columns=list(spec.inputs), index=frame.index)
        if "retail_price" in x:  # unknown (NaN) where the catalogue has none: the imputer fills it
            x["retail_price"] = np.log(x["retail_price"])
        return x

    model = make_pipeline(
        ColumnTransformer([
            ("categories", OneHotEncoder(handle_unknown="ignore"), categorical),
            ("numbers", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), numeric),
        ]),
        Ridge(alpha=1.0),
    )  # fmt: skip
    model.fit(table(train), np.log(train[LABEL].to_numpy(float)))
    return np.exp(model.predict(table(rows)))


def baselines(train: pd.DataFrame, rows: pd.DataFrame, spec: ModelSpec) -> dict[str, np.ndarray]:
    return {
        "global_median": global_median(train, rows),
        "tier_category_median": group_median(train, rows),
        "linear": linear(train, rows, spec),
    }


def noise_floor(rows: pd.DataFrame) -> np.ndarray | None:
    return rows[EXPECTED].to_numpy(float) if EXPECTED in rows else None


def by_group(rows: pd.DataFrame, predictions: dict[str, np.ndarray], key: pd.Series) -> pd.DataFrame:
    """MAE of each predictor per group (category, month): one row per group, one column each."""
    actual = rows[LABEL].to_numpy(float)
    errors = pd.DataFrame({name: np.abs(p - actual) for name, p in predictions.items()}, index=rows.index)
    table = errors.groupby(key.to_numpy()).mean()
    table["bookings"] = errors.groupby(key.to_numpy()).size()
    return table
