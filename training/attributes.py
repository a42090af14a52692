"""Attributes only against the brand median: can an item be priced from its listing alone?

A pricing team's first rule for a new listing is "its brand's usual price". The quoted model has
popularity, season and customer features besides the item's attributes; this evaluation asks
the narrower question a new catalogue raises: from brand, category, colour, size, condition,
tier and retail price alone (whichever the catalogue has), is an item priced better than at its
brand's median? Items, not bookings, are held out: a held-out item's bookings are never seen,
so an item's own price cannot leak into its quote. Each item's price is the median it was
booked at. Brand is target-encoded (``encoding.py``), fitted on the training items only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from training.dataset import LABEL
from training.encoding import encode, fit_encoding, out_of_fold

ATTRIBUTES = ("brand", "brand_tier", "item_category", "colour", "size", "condition", "retail_price", "units")
NUMERIC = ("retail_price", "units")
HOLDOUT_SHARE = 0.2
MIN_ITEMS = 20  # in each part: fewer and the comparison says nothing
PARAMS = {"objective": "reg:squarederror", "eval_metric": "mae", "tree_method": "hist", "max_depth": 6,
          "learning_rate": 0.1, "min_child_weight": 3, "subsample": 0.8, "colsample_bytree": 0.9}  # fmt: skip


def item_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per booked item: its attributes as its latest booking saw them, its median price."""
    present = [c for c in ATTRIBUTES if c in frame]
    items = frame[["item_id", *present, LABEL]].copy()
    items["item_id"] = items["item_id"].astype(str)
    grouped = items.groupby("item_id", sort=True, observed=True)
    table = grouped[present].last() if present else pd.DataFrame(index=grouped.size().index)
    table[LABEL] = grouped[LABEL].median()
    return table.reset_index()


def holdout(item_ids, share: float = HOLDOUT_SHARE) -> np.ndarray:
    """A stable split by item: the same items are held out on every run of the same catalogue."""
    salted = pd.Series(item_ids).astype(str).radd("holdout:")
    hashed = pd.util.hash_array(salted.to_numpy(dtype=object))
    return (hashed % np.uint64(10_000)).astype(np.int64) < int(share * 10_000)


def brand_median(train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Each row's brand's median price over the training items; the global median for a brand
    the training items never had."""
    medians = train.groupby(train["brand"].astype(str))[LABEL].median()
    got = rows["brand"].astype(str).map(medians)
    return got.fillna(float(train[LABEL].median())).to_numpy(float)


def _matrix(train: pd.DataFrame, rows: pd.DataFrame, y: np.ndarray, max_levels: int, fitting: bool):
    """Attributes as numbers: narrow strings as categorical codes of the training levels, wide
    ones (brand) target-encoded (out of fold for the training items themselves)."""
    columns, types = {}, []
    for name in ATTRIBUTES:
        if name not in train or train[name].notna().sum() == 0:
            continue  # the catalogue does not have it
        if name in NUMERIC:
            values = pd.to_numeric(rows[name], errors="coerce").to_numpy(float)
            columns[name] = np.log(values) if name == "retail_price" else values
            types.append("q")
            continue
        levels = sorted(train[name].dropna().astype(str).unique())
        if len(levels) <= max_levels:
            codes = pd.Categorical(rows[name].astype(object).where(rows[name].notna()), categories=levels).codes
            columns[name] = np.where(codes < 0, np.nan, codes).astype(float)
            types.append("c")
        elif fitting:
            columns[name] = out_of_fold(train[name], y, train["item_id"])
            types.append("q")
        else:
            encoding, prior = fit_encoding(train[name], y, train["item_id"])
            columns[name] = encode(rows[name], encoding, prior)
            types.append("q")
    return pd.DataFrame(columns, index=rows.index), types


def evaluate_attributes(frame: pd.DataFrame, max_levels: int = 64, seed: int = 0, nthread: int = 2) -> dict:
    """MAE on held-out items of a model of the items' attributes alone, beside the brand median's.
    Empty when there are too few items to hold some out (say so, not a traceback)."""
    items = item_table(frame)
    held = holdout(items["item_id"])
    train, test = items[~held].reset_index(drop=True), items[held].reset_index(drop=True)
    if len(train) < MIN_ITEMS or len(test) < MIN_ITEMS:
        return {}
    y = np.log(train[LABEL].to_numpy(float))
    x_train, types = _matrix(train, train, y, max_levels, fitting=True)
    x_test, _ = _matrix(train, test, y, max_levels, fitting=False)
    stop = holdout(train["item_id"], 0.15) if len(train) >= 5 * MIN_ITEMS else np.zeros(len(train), bool)

    def dmatrix(x, label=None):
        return xgb.DMatrix(x.to_numpy(np.float32), label=label, feature_types=types, enable_categorical=True,
                           feature_names=list(x.columns), nthread=nthread)  # fmt: skip

    params = PARAMS | {"seed": seed, "nthread": nthread, "max_cat_to_onehot": 1}
    if stop.any():
        booster = xgb.train(params, dmatrix(x_train[~stop], y[~stop]), num_boost_round=2_000, verbose_eval=False,
                            evals=[(dmatrix(x_train[stop], y[stop]), "stop")], early_stopping_rounds=30)  # fmt: skip
        booster = booster[: booster.best_iteration + 1]
    else:
        booster = xgb.train(params, dmatrix(x_train, y), num_boost_round=200)
    actual = test[LABEL].to_numpy(float)
    model = np.exp(booster.inplace_predict(x_test.to_numpy(np.float32)))
    baseline = brand_median(train, test)
    return {
        "attributes_only_mae": float(np.mean(np.abs(model - actual))),
        "attributes_only_brand_median_mae": float(np.mean(np.abs(baseline - actual))),
        "attributes_only_items_held_out": float(len(test)),
        "attributes_only_items_trained": float(len(train)),
    }
