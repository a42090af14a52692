"""The model's input contract: which features, in which order, and how each becomes a number.

A ``ModelSpec`` is saved beside the booster in every registered model version, so the service
rebuilds the exact input from the model alone, never from training code state. ``matrix`` is
the only way rows become the booster's input, for a training frame and for one quote alike.
Categorical values map to the codes of the levels seen in training; an unseen value or a
missing one becomes NaN, which XGBoost routes down each split's learned default branch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from training.predictor import request_features as rf

SPEC_FILE = "model_spec.json"
TARGETS = ("log",)  # the booster predicts log(price per day)
SMALL = 32  # up to this many rows, ``matrix`` takes the per-row quote path (serving); above, arrays


@dataclass(frozen=True)
class ModelSpec:
    feature_service: str
    feast_features: tuple[str, ...]  # "view:feature", the service's order (what serving fetches)
    inputs: tuple[str, ...]  # the booster's columns, in order
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # categorical input -> its levels
    target: str = "log"
    # Target-encoded inputs (too many values for categorical splits: brand): value -> number,
    # and the number an unseen value reads (``training/encoding.py``).
    encodings: dict[str, dict[str, float]] = field(default_factory=dict)
    priors: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"unknown target transform {self.target!r}; known: {TARGETS}")
        object.__setattr__(
            self, "_codes", {c: {v: float(i) for i, v in enumerate(lv)} for c, lv in self.levels.items()}
        )

    @property
    def feature_names(self) -> list[str]:
        """Feature names as Feast returns them (``full_feature_names=False``)."""
        return [ref.split(":", 1)[1] for ref in self.feast_features]

    @property
    def feature_types(self) -> list[str]:
        return ["c" if name in self.levels else "q" for name in self.inputs]

    def matrix(self, columns: Mapping) -> np.ndarray:
        """Rows as the booster's float32 input: ``columns`` maps each Feast feature name and
        rental_start, rental_days, quote_time to a sequence (a DataFrame or Feast's ``to_dict``)."""
        n = len(columns["quote_time"])
        if n <= SMALL:  # quotes: the scalar lines per row, microseconds each and free of pandas
            rows = [rf.for_quote(**_row(columns, k)) for k in range(n)]
            derived = {name: [row[name] for row in rows] for name in rows[0]} if rows else {}
        else:
            derived = rf.for_frame(columns)
        out = np.empty((n, len(self.inputs)), dtype=np.float32)
        for j, name in enumerate(self.inputs):
            if name in derived:
                out[:, j] = derived[name]
            elif name in self._codes:
                out[:, j] = self._encode(name, columns[name], n)
            elif name in self.encodings:
                out[:, j] = self._target_encode(name, columns[name])
            else:
                out[:, j] = _numbers(columns[name])
        return out

    def _encode(self, name: str, values, n: int) -> np.ndarray:
        """Codes of a categorical input's training levels; unseen or missing values are NaN."""
        if n <= SMALL:  # quotes: a dict lookup per value beats building a Categorical
            get, nan = self._codes[name].get, np.nan
            return np.array([get(v, nan) for v in values], dtype=np.float32)
        if isinstance(values, pd.Series) and not isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        codes = pd.Categorical(values, categories=list(self.levels[name])).codes.astype(np.float32)
        codes[codes < 0] = np.nan
        return codes

    def _target_encode(self, name: str, values) -> np.ndarray:
        """The training split's number for each value; unseen: the prior; missing: NaN."""
        get, prior = self.encodings[name].get, self.priors[name]
        if isinstance(values, pd.Series):
            values = values.astype(object).tolist()
        return np.array([np.nan if v is None or v != v else get(str(v), prior) for v in values], dtype=np.float32)

    def to_price(self, raw: np.ndarray) -> np.ndarray:
        return np.exp(raw)

    def from_price(self, price: np.ndarray) -> np.ndarray:
        return np.log(price)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        raw = json.loads(text)
        raw["feast_features"] = tuple(raw["feast_features"])
        raw["inputs"] = tuple(raw["inputs"])
        raw["levels"] = {k: tuple(v) for k, v in raw["levels"].items()}
        return cls(**raw)  # a spec saved before ``encodings`` existed has none


def _row(columns: Mapping, k: int) -> dict:
    """Row ``k``'s request inputs as scalars, for the quote path."""
    row = {name: _scalar(columns[name], k) for name in ("rental_start", "rental_days", "quote_time")}
    for name in rf.TIME_FEATURES:
        row[name] = _scalar(columns[name], k) if name in columns else None
    return row


def _scalar(values, k: int):
    return values.iloc[k] if isinstance(values, pd.Series) else values[k]


def _numbers(values) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(values, dtype=float)  # None -> NaN


def build_spec(
    feature_service: str,
    feast_features: list[str],
    categorical: list[str],
    frame: pd.DataFrame,
    max_levels: int,
    excluded: tuple[str, ...] = (),
    target: np.ndarray | None = None,
    groups=None,
) -> ModelSpec:
    """The spec for a feature service's features: timestamps become ages (request features),
    strings become categoricals with the levels seen in ``frame`` (the training rows). A string
    with more than ``max_levels`` values (brand: thousands in a real catalogue, most with a few
    items) is target-encoded from ``target`` (the training rows' model target, grouped by
    ``groups``, the item ids): XGBoost's partition splits over that many levels cost ten times
    the training time and overfit. Without a target such a string is left out."""
    from training.encoding import fit_encoding  # training only: serving reads the spec's numbers

    names = [ref.split(":", 1)[1] for ref in feast_features]
    categorical = [c for c in categorical if c not in excluded]
    levels = {c: tuple(sorted(frame[c].dropna().astype(str).unique())) for c in categorical}
    wide = {c for c, lv in levels.items() if len(lv) > max_levels}
    encodings, priors = {}, {}
    if target is not None:
        for c in sorted(wide):
            encodings[c], priors[c] = fit_encoding(frame[c], target, groups)
    dropped = (wide - set(encodings)) | set(excluded)
    inputs = [n for n in names if n not in rf.TIME_FEATURES and n not in dropped] + [
        n for n in rf.NAMES if n not in names and n not in dropped
    ]
    return ModelSpec(
        feature_service, tuple(feast_features), tuple(inputs), {c: lv for c, lv in levels.items() if c not in wide},
        encodings=encodings, priors=priors,
    )  # fmt: skip
