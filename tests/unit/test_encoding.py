"""Target encoding without leakage, and catalogue text as safe MLflow names."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.encoding import encode, fit_encoding, folds, out_of_fold
from training.predictor.spec import ModelSpec, build_spec
from training.safe_names import metric_safe


def test_a_training_row_never_reads_its_own_items_price():
    """A brand of one item: out of fold it reads the prior of the other items, never its price."""
    values = ["solo", "big", "big", "big", "big", "big"] * 20
    items = [f"i{k}" for k in range(len(values))]
    y = np.where(np.array(values) == "solo", 9.0, 1.0)
    encoded = out_of_fold(values, y, items)
    assert np.all(encoded[np.array(values) == "solo"] < 9.0)
    mapping, prior = fit_encoding(values, y, items)
    assert mapping["solo"] > prior and encode(["unseen", None], mapping, prior)[0] == prior
    assert np.isnan(encode([None], mapping, prior)[0])


def test_folds_are_by_item_and_stable():
    items = pd.Series([f"item-{k % 50}" for k in range(500)])
    fold = folds(items)
    assert (pd.Series(fold).groupby(items).nunique() == 1).all()
    assert np.array_equal(fold, folds(items.tolist()))


def test_zero_rows_fit_and_encode_to_nothing():
    mapping, prior = fit_encoding([], [], [])
    assert mapping == {} and np.isnan(prior) and len(encode([], mapping, prior)) == 0
    assert len(out_of_fold([], [], [])) == 0


def test_a_wide_string_is_target_encoded_into_the_spec_and_survives_json():
    frame = pd.DataFrame({"brand": [f"b{k % 100}" for k in range(1_000)], "item_id": [f"i{k}" for k in range(1_000)]})
    y = np.log(np.arange(1, 1_001, dtype=float))
    spec = build_spec("svc", ["item_attributes:brand"], ["brand"], frame, max_levels=64, target=y,
                      groups=frame["item_id"])  # fmt: skip
    assert "brand" in spec.inputs and "brand" not in spec.levels and len(spec.encodings["brand"]) == 100
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    rows = {"brand": ["b1", "new brand", None], "rental_start": ["2026-06-01"] * 3, "rental_days": [2] * 3,
            "quote_time": ["2026-05-01T00:00:00+00:00"] * 3}  # fmt: skip
    x = again.matrix(rows)[:, list(again.inputs).index("brand")]
    assert x[0] == np.float32(again.encodings["brand"]["b1"]) and x[1] == np.float32(again.priors["brand"])
    assert np.isnan(x[2])
    dropped = build_spec("svc", ["item_attributes:brand"], ["brand"], frame, max_levels=64)  # no target
    assert "brand" not in dropped.inputs


def test_catalogue_text_becomes_a_safe_unique_stable_metric_name():
    texts = ["Cotton-Jersey, Loose, Summer, Seasonal", "Cotton-Jersey; Loose; Summer; Seasonal",
             "Robe d'été / rose 🌸", "x" * 500, "x" * 501, "a/b", "a_b"]  # fmt: skip
    names = [metric_safe(t) for t in texts]
    assert len(set(names)) == len(names) and names == [metric_safe(t) for t in texts]
    assert all(len(n) <= 60 and all(c.isalnum() or c in "_-." for c in n) for n in names)
    assert metric_safe("dress") == "dress" and metric_safe("a_b") == "a_b"
