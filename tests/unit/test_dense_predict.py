"""The serving path's direct C-API call gives XGBoost's own predictions, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from training.predictor.dense import DensePredictor


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2_000, 6)).astype(np.float32)
    x[:, 5] = rng.integers(0, 5, size=2_000)  # a categorical input, as the price model has
    y = x[:, 0] * 2 + np.sin(x[:, 1]) + (x[:, 5] == 3) + rng.normal(scale=0.1, size=2_000)
    data = xgb.DMatrix(x, label=y, feature_types=["q"] * 5 + ["c"], enable_categorical=True)
    return xgb.train({"max_depth": 5, "eta": 0.3, "nthread": 1, "max_cat_to_onehot": 1}, data, num_boost_round=30)


def test_margins_equal_inplace_predict_bit_for_bit_with_missing_values(booster):
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(500, 6)).astype(np.float32)
    rows[:, 5] = rng.integers(0, 7, size=500)  # categories 5 and 6 were never seen
    rows[rng.random(rows.shape) < 0.25] = np.nan
    dense = DensePredictor(booster)
    assert np.array_equal(dense(rows), booster.inplace_predict(rows))
    assert np.array_equal(dense(rows[:1]), booster.inplace_predict(rows[:1]))
    assert dense(rows[:1]).shape == (1,)


def test_rows_of_the_wrong_width_are_refused(booster):
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        DensePredictor(booster)(np.zeros((2, 5), dtype=np.float32))


@pytest.mark.parametrize("rows", [0, 1, 2, 33, 250_000])
def test_every_batch_size_from_zero_rows_matches_xgboost(booster, rows):
    """Zero rows give an empty answer as ``inplace_predict`` does (a null data pointer made the C
    call fail); one row, the quote path's edge, and a batch far larger than a quote's."""
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 6)).astype(np.float32)
    x[:, 5] = rng.integers(0, 7, size=rows)
    x[rng.random(x.shape) < 0.2] = np.nan
    got, expected = DensePredictor(booster)(x), booster.inplace_predict(x)
    assert got.shape == expected.shape == (rows,) and got.dtype == expected.dtype
    assert np.array_equal(got, expected)


def test_all_missing_rows_take_every_default_branch_as_xgboost_does(booster):
    x = np.full((3, 6), np.nan, dtype=np.float32)
    assert np.array_equal(DensePredictor(booster)(x), booster.inplace_predict(x))
    assert len(set(DensePredictor(booster)(x).tolist())) == 1
