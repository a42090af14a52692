"""Target encoding for string features with too many values to split on as categories (brand).

A real catalogue has thousands of brands, most with a handful of items: XGBoost's categorical
splits over that many levels are slow and overfit, and dropping the column loses the strongest
price signal a catalogue has. Instead each value becomes a number, the smoothed mean log price
of its items, fitted on the training split only.

Leakage is what makes target encoding dangerous: a brand with one item would hand that item's
own price back to the model. So training rows get out-of-fold values (each fold's rows are
encoded from the other folds' items, folds by item, never by row), while the validation rows,
the early-stopping rows and every served quote get the encoding of the whole training split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FOLDS = 5
# Items, not rows: a value seen on this many items is half its own mean, half the prior. A brand
# with one popular item is still one item's word on the brand.
SMOOTHING = 5.0


def folds(groups, k: int = FOLDS) -> np.ndarray:
    """A stable fold per group (item id): the same item is in the same fold on every run."""
    hashed = pd.util.hash_array(np.asarray(pd.Series(groups).astype(str), dtype=object))
    return (hashed % np.uint64(k)).astype(np.int64)


def _per_item(values, target, groups) -> pd.DataFrame:
    """One row per item with a value: its value and its mean target over its rows."""
    frame = pd.DataFrame(
        {"value": pd.Series(values).astype(object).to_numpy(), "y": np.asarray(target, float),
         "item": pd.Series(groups).astype(str).to_numpy()}
    )  # fmt: skip
    frame = frame[frame["value"].notna()]
    frame["value"] = frame["value"].astype(str)
    return frame.groupby("item", sort=False).agg(value=("value", "first"), y=("y", "mean"))


def fit_encoding(values, target, groups) -> tuple[dict[str, float], float]:
    """Each value's smoothed mean target over its items, and the prior (the mean over items),
    which is what an unseen value reads. Zero rows: no values, a NaN prior."""
    items = _per_item(values, target, groups)
    if items.empty:
        return {}, float("nan")
    prior = float(items["y"].mean())
    stats = items.groupby("value", sort=True)["y"].agg(["sum", "count"])
    encoded = (stats["sum"] + SMOOTHING * prior) / (stats["count"] + SMOOTHING)
    return {str(k): float(v) for k, v in encoded.items()}, prior


def encode(values, encoding: dict[str, float], prior: float) -> np.ndarray:
    """Values as numbers: a missing value is NaN (the trees route it), an unseen one the prior."""
    series = pd.Series(values).astype(object)
    out = series.map(lambda v: encoding.get(str(v), prior) if v is not None and v == v else np.nan)
    return out.to_numpy(dtype=float, na_value=np.nan)


def out_of_fold(values, target, groups, k: int = FOLDS) -> np.ndarray:
    """The encoding of each training row from the other folds' items only."""
    fold = folds(groups, k)
    values = pd.Series(values).astype(object).reset_index(drop=True)
    target, groups = np.asarray(target, float), pd.Series(groups).reset_index(drop=True)
    out = np.full(len(values), np.nan)
    for f in range(k):
        inside = fold == f
        if not inside.any():
            continue
        encoding, prior = fit_encoding(values[~inside], target[~inside], groups[~inside])
        out[inside] = encode(values[inside], encoding, prior)  # no other fold: all NaN
    return out
