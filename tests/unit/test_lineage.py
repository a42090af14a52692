"""The pure pieces of a run's lineage and its reproduction: hashes, digests, differences, settings."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from rental.settings import Settings
from training.dataset import TrainingSet
from training.lineage import (
    MISSING,
    Difference,
    canonical_sha256,
    data_window,
    differences,
    file_sha256,
    history_sha256,
    lock_sha256,
    restore_settings,
    shaping_settings,
)
from training.reproduce import RELATIVE_TOLERANCE, compare, in_window
from training.tracking import code_version


def test_file_and_lock_hashes_are_sha256_of_the_bytes(tmp_path):
    body = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # more than one read block
    (tmp_path / "uv.lock").write_bytes(body)
    assert file_sha256(tmp_path / "uv.lock") == lock_sha256(tmp_path) == hashlib.sha256(body).hexdigest()
    assert lock_sha256(tmp_path / "elsewhere") == MISSING


def test_history_digests_name_each_file_and_a_missing_one(tmp_path):
    (tmp_path / "items.parquet").write_bytes(b"items")
    (tmp_path / "bookings.parquet").write_bytes(b"bookings")
    assert history_sha256(tmp_path) == {
        "items.parquet": hashlib.sha256(b"items").hexdigest(),
        "customers.parquet": MISSING,
        "bookings.parquet": hashlib.sha256(b"bookings").hexdigest(),
    }


def _frame(n: int) -> pd.DataFrame:
    colours = pd.Categorical((["red", "blue", "green"] * n)[:n])
    return pd.DataFrame({
        "booking_id": [f"b{i}" for i in range(n)], "colour": colours, "price_per_day": np.arange(n, dtype=float) + 10,
        "event_time": pd.date_range("2026-01-01", periods=n, freq="D", tz="UTC"),
        "event_timestamp": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
    })  # fmt: skip


def _digest(frame: pd.DataFrame) -> str:
    return TrainingSet(frame, None, "asof").digest  # type: ignore[arg-type]


def test_the_data_digest_follows_every_value_and_not_the_category_levels():
    frame = _frame(9)
    assert _digest(frame) == _digest(_frame(9))
    assert _digest(frame) != _digest(frame.assign(price_per_day=frame["price_per_day"].where(frame.index != 4, 99.0)))
    assert _digest(frame) != _digest(frame.iloc[:8])
    # the first rows of a larger set (its categories include later values) hash as those rows alone
    first = frame.iloc[:2].reset_index(drop=True)
    alone = first.assign(colour=pd.Categorical(first["colour"].astype(str), categories=["red", "blue"]))
    assert list(first["colour"].cat.categories) != list(alone["colour"].cat.categories)
    assert _digest(first) == _digest(alone)
    # the time features are read at is derived from event_time, and left out
    assert _digest(frame) == _digest(frame.assign(event_timestamp=frame["event_timestamp"] + pd.Timedelta(1, "s")))


def test_a_window_keeps_the_rows_between_its_ends_inclusive():
    data = TrainingSet(_frame(9), None, "asof")  # type: ignore[arg-type]
    start, end = data_window(data.frame.iloc[2:6])
    assert (start, end) == ("2026-01-03T00:00:00+00:00", "2026-01-06T00:00:00+00:00")
    inside = in_window(data, start, end)
    assert inside.frame["booking_id"].tolist() == ["b2", "b3", "b4", "b5"] and inside.frame.index.tolist() == [
        0,
        1,
        2,
        3,
    ]
    assert _digest(inside.frame) == _digest(data.frame.iloc[2:6].reset_index(drop=True))


def test_canonical_digest_ignores_key_order_only():
    assert canonical_sha256({"a": 1, "b": {"c": [1, 2]}}) == canonical_sha256({"b": {"c": [1, 2]}, "a": 1})
    assert canonical_sha256({"a": 1, "b": {"c": [1, 2]}}) != canonical_sha256({"a": 1, "b": {"c": [2, 1]}})


def _environment(commit="a" * 40, registry="r1", dtype="Int64"):
    return {
        "code": {"commit": commit, "dirty": "false", "diff_sha256": hashlib.sha256(b"").hexdigest()},
        "lock_sha256": "l1", "packages": {"xgboost": "3.2.0"},
        "feast": {"registry_sha256": registry, "service_digest": canonical_sha256(dtype),
                  "definition": {"views": {"item_popularity": {"features": {"bookings_7d": dtype}}}}},
    }  # fmt: skip


def test_differences_name_each_leaf_and_only_the_registry_file_is_a_note():
    assert differences(_environment(), _environment()) == []
    found = {d.what: d for d in differences(_environment(), _environment(commit="b" * 40, registry="r2"))}
    assert set(found) == {"code.commit", "feast.registry_sha256"}
    assert found["code.commit"].blocking and not found["feast.registry_sha256"].blocking
    assert str(found["code.commit"]) == f"code.commit: the run logged {'a' * 40}, now {'b' * 40}"
    typed = {d.what for d in differences(_environment(), _environment(dtype="Float64"))}
    assert typed == {"feast.service_digest", "feast.definition.views.item_popularity.features.bookings_7d"}
    gone = differences({"packages": {"xgboost": "3.2.0"}}, {"packages": {}})
    assert gone == [Difference("packages.xgboost", "3.2.0", None, True)] and "(absent)" in str(gone[0])


def test_an_unknown_code_version_cannot_be_checked_even_against_itself():
    unknown = _environment(commit="unknown")
    assert [d.what for d in differences(unknown, unknown)] == ["code.commit"]


def test_code_version_is_a_commit_a_dirty_flag_and_the_diffs_digest():
    version = code_version()
    assert set(version) == {"code.commit", "code.dirty", "code.diff_sha256"}
    assert len(version["code.commit"]) == 40 and version["code.dirty"] in ("true", "false")
    if version["code.dirty"] == "false":
        assert version["code.diff_sha256"] == hashlib.sha256(b"").hexdigest()
    else:
        assert len(version["code.diff_sha256"]) == 64 and version["code.diff_sha256"] != hashlib.sha256(b"").hexdigest()


def test_logged_settings_come_back_typed_and_what_changed_is_noted():
    settings = Settings()
    logged = shaping_settings(settings.model_copy(update={"xgb_max_depth": 3, "train_excluded_features": ("colour",)}))
    assert {"seed", "train_nthread", "xgb_learning_rate", "train_validation_weeks"} <= set(logged)
    assert logged["train_excluded_features"] == ["colour"]  # JSON, as lineage.json holds it
    restored, notes = restore_settings(settings, logged)
    assert restored.xgb_max_depth == 3 and restored.train_excluded_features == ("colour",) and notes == []
    old = {k: v for k, v in logged.items() if k != "xgb_max_bin"} | {"xgb_gone": 1, "xgb_max_depth": "deep"}
    restored, notes = restore_settings(settings, old)
    assert restored.xgb_max_depth == settings.xgb_max_depth
    assert any("xgb_gone" in n and "no longer exists" in n for n in notes)
    assert any("xgb_max_depth" in n and "no longer validates" in n for n in notes)
    assert any("xgb_max_bin is new" in n for n in notes)


def test_the_comparison_says_exact_within_tolerance_or_differs():
    paid = np.array([10.0, 20.0, 30.0])
    logged = np.array([11.0, 19.0, 33.0])
    exact = compare(logged, logged.copy(), paid)
    assert exact.verdict == "exact" and exact.equal_share == 1.0 and exact.max_abs_diff == 0.0
    assert exact.logged_mae == exact.rebuilt_mae == pytest.approx(5 / 3)
    close = compare(logged, logged * (1 + RELATIVE_TOLERANCE / 2), paid)
    assert close.verdict == "within tolerance" and close.matches and close.equal_share == 0.0
    far = compare(logged, logged + np.array([0.0, 0.0, 0.5]), paid)
    assert far.verdict == "differs" and not far.matches
    assert (
        far.max_abs_diff == 0.5
        and far.equal_share == pytest.approx(2 / 3)
        and far.rebuilt_mae == pytest.approx(5.5 / 3)
    )
    assert compare(np.array([]), np.array([]), np.array([])).matches
