"""XGBoost on log price, trained on the past and stopped early on the weeks just before validation.

Log price: prices are multiplicative (tier x season x popularity x ...), so a log turns the
price process into sums that trees fit with fewer splits, and squared error on the log is
minimised by the median price, the best single answer for MAE under multiplicative noise.
The time split is three-way: train < early-stopping weeks < validation weeks (the latest), so
the reported validation error is measured on weeks that chose nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb

from rental.settings import Settings
from training.dataset import TrainingDataError, TrainingSet
from training.encoding import out_of_fold
from training.predictor.spec import ModelSpec, build_spec

# Demand raises the price: more bookings and more revenue recently never lower a quote. Without
# the constraint the trees credit popularity to whichever correlated window fits best, and a
# busier item, all else equal, could be priced lower.
MONOTONE_INCREASING = ("bookings_7d", "bookings_30d", "revenue_7d", "revenue_30d")


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # boolean masks over the training frame
    stop: np.ndarray
    valid: np.ndarray
    valid_start: pd.Timestamp
    stop_start: pd.Timestamp


def time_split(frame: pd.DataFrame, settings: Settings) -> Split:
    times = pd.to_datetime(frame["event_time"], utc=True)
    end = times.max()
    valid_start = (end - pd.Timedelta(weeks=settings.train_validation_weeks)).floor("D")
    stop_start = valid_start - pd.Timedelta(weeks=settings.train_early_stopping_weeks)
    split = Split(
        train=(times < stop_start).to_numpy(),
        stop=((times >= stop_start) & (times < valid_start)).to_numpy(),
        valid=(times >= valid_start).to_numpy(),
        valid_start=valid_start,
        stop_start=stop_start,
    )
    for part in ("train", "stop", "valid"):
        if getattr(split, part).sum() < 50:
            raise TrainingDataError(
                f"only {getattr(split, part).sum()} bookings in the {part} part of the time split "
                f"(history {times.min():%Y-%m-%d} to {end:%Y-%m-%d}, validation from {valid_start:%Y-%m-%d}, "
                f"early stopping from {stop_start:%Y-%m-%d}): use a longer history or fewer weeks"
            )
    return split


def xgb_params(settings: Settings) -> dict:
    return {
        "objective": "reg:squarederror",
        "eval_metric": "mae",
        "tree_method": "hist",
        "max_depth": settings.xgb_max_depth,
        "learning_rate": settings.xgb_learning_rate,
        "min_child_weight": settings.xgb_min_child_weight,
        "subsample": settings.xgb_subsample,
        "colsample_bytree": settings.xgb_colsample_bytree,
        "max_bin": settings.xgb_max_bin,
        "max_cat_to_onehot": settings.train_max_category_levels,  # one-vs-rest splits: fast, enough here
        "nthread": settings.train_nthread,
        "seed": settings.seed,
    }


class _Progress(xgb.callback.TrainingCallback):
    def __init__(self, report: Callable[[int], None]):
        self.report = report

    def after_iteration(self, model, epoch, evals_log) -> bool:
        self.report(epoch + 1)
        return False


@dataclass
class Fitted:
    booster: xgb.Booster  # cut to the best iteration
    spec: ModelSpec
    best_iteration: int
    params: dict
    engine: dict = field(default_factory=dict)  # where boosting ran, logged as the run's fit.* parameters


def fit(data: TrainingSet, split: Split, settings: Settings, progress: Callable[[int], None] | None = None) -> Fitted:
    frame = data.frame
    y = np.log(frame["price_per_day"].to_numpy(float))  # the target ``ModelSpec`` declares ("log")
    train = frame[split.train]
    spec = build_spec(
        data.service.name, data.service.feature_refs, list(data.service.categorical), train,
        max_levels=settings.train_max_category_levels, excluded=tuple(settings.train_excluded_features),
        target=y[split.train], groups=train["item_id"],
    )  # fmt: skip
    x = spec.matrix(frame)
    rows = np.flatnonzero(split.train)
    for j, name in enumerate(spec.inputs):  # training rows never read their own price (encoding.py)
        if name in spec.encodings:
            x[rows, j] = out_of_fold(train[name], y[split.train], train["item_id"])
    names, types = list(spec.inputs), spec.feature_types

    def dmatrix(mask):
        return xgb.DMatrix(x[mask], label=y[mask], feature_names=names, feature_types=types, enable_categorical=True,
                           nthread=settings.train_nthread)  # fmt: skip

    params = xgb_params(settings) | {
        "monotone_constraints": "(" + ",".join("1" if n in MONOTONE_INCREASING else "0" for n in names) + ")"
    }
    if settings.train_fit_engine == "dask":  # the same rounds on a Dask cluster: distributed.py
        from training.distributed import train_on_dask

        booster, engine = train_on_dask(params, (x[split.train], y[split.train]), (x[split.stop], y[split.stop]),
                                        names, types, settings, progress)  # fmt: skip
    else:
        booster = xgb.train(
            params, dmatrix(split.train), num_boost_round=settings.xgb_num_boost_round,
            evals=[(dmatrix(split.stop), "stop")], early_stopping_rounds=settings.xgb_early_stopping_rounds,
            verbose_eval=False, callbacks=[_Progress(progress)] if progress else None,
        )  # fmt: skip
        engine = {"fit.engine": "local", "fit.workers": 1, "fit.threads": settings.train_nthread}
    best = int(booster.best_iteration)
    return Fitted(booster[: best + 1], spec, best, params, engine)


def predict_price(booster: xgb.Booster, spec: ModelSpec, columns) -> np.ndarray:
    """Price per day for rows (see ``ModelSpec.matrix``): the one prediction path."""
    return spec.to_price(booster.inplace_predict(spec.matrix(columns)))
