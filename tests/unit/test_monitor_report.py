"""One window's Evidently reports on a small synthetic log: what passes, what fails, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring.checks.report import check_window
from monitoring.checks.windows import Window
from monitoring.reference import Reference
from rental.settings import Settings

START = datetime(2026, 3, 2, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(days=1))


def log(n: int, seed: int, paid_factor: dict[str, float] | None = None, degraded: float = 0.0):
    """Quotes and outcomes in the log's shape: two categories, two features, all booked."""
    rng = np.random.default_rng(seed)
    category = np.where(rng.random(n) < 0.5, "dress", "bag")
    retail = rng.lognormal(5.5, 0.4, n)
    quoted = np.round(0.04 * retail * np.where(category == "bag", 1.5, 1.0), 2)
    factor = np.array([(paid_factor or {}).get(c, 1.0) for c in category])
    paid = np.round(quoted * np.exp(rng.normal(0, 0.12, n)) * factor, 2)
    times = pd.Timestamp(START) + pd.to_timedelta(rng.uniform(0, 86_399, n), unit="s")
    quotes = pd.DataFrame({
        "request_id": [f"r{seed}_{i}" for i in range(n)], "quoted_at": times, "category": None,
        "rental_start": (times + pd.Timedelta(days=5)).date, "rental_days": rng.integers(2, 8, n),
        "price_per_day": quoted, "model_version": "7", "degraded": rng.random(n) < degraded, "cold_start": False,
        "feature_age_s": rng.exponential(5, n), "f_item_category": category, "f_retail_price": retail,
        "f_bookings_7d": rng.poisson(2, n).astype(float),
    })  # fmt: skip
    outcomes = quotes[["request_id", "quoted_at", "price_per_day", "model_version"]].assign(
        category=None, booked=True, paid_per_day=paid
    )
    return quotes, outcomes


@pytest.fixture(scope="module")
def reference() -> Reference:
    quotes, outcomes = log(3_000, seed=1)
    frame = quotes.merge(outcomes[["request_id", "booked", "paid_per_day"]], on="request_id")
    return Reference("7", "mlflow", frame, ["item_category", "retail_price", "bookings_7d"])


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(monitor_min_rows=500, monitor_min_outcomes=200)


def checks(result) -> dict[str, bool | None]:
    return {c.name: c.passed for c in result.checks}


def test_a_window_like_the_reference_passes(reference, settings):
    result = check_window(WINDOW, "7", *log(1_000, seed=2), reference, settings)
    assert result.status == "ok", result.failed
    assert set(result.snapshots) == {"drift", "by_category", "quality"}
    assert abs(result.figures["bias"] - result.figures["reference_bias"]) < 0.03
    assert result.figures["drift_share"] == 0
    assert set(result.figures["prediction_drift_by_category"]) == {"dress", "bag"}  # a watch figure per category


def test_prices_paid_higher_fail_the_bias(reference, settings):
    result = check_window(
        WINDOW, "7", *log(1_000, seed=3, paid_factor={"dress": 1.15, "bag": 1.15}), reference, settings
    )
    assert checks(result)["price_bias"] is False and result.status == "failing"
    assert result.figures["bias"] - result.figures["reference_bias"] == pytest.approx(np.log(1.15), abs=0.03)


def test_one_category_mispriced_fails_by_category_only(reference, settings):
    result = check_window(WINDOW, "7", *log(1_000, seed=4, paid_factor={"bag": 1.3}), reference, settings)
    assert checks(result)["price_bias_by_category"] is False and result.figures["categories_mispriced"] == ["bag"]


def test_degraded_quotes_fail_data_health(reference, settings):
    result = check_window(WINDOW, "7", *log(1_000, seed=5, degraded=0.2), reference, settings)
    assert checks(result)["degraded_quotes"] is False
    assert result.figures["degraded_share"] == pytest.approx(0.2, abs=0.04)


def test_too_few_rows_are_shown_but_not_judged(reference, settings):
    result = check_window(WINDOW, "7", *log(100, seed=6, paid_factor={"dress": 2.0, "bag": 2.0}), reference, settings)
    assert result.status == "too few rows" and result.failed == []


def test_no_reference_yet_is_learning(settings):
    result = check_window(WINDOW, "7", *log(1_000, seed=7), None, settings)
    assert result.status == "learning" and result.checks == [] and result.figures["booking_rate"] == 1.0


def test_a_live_reference_is_the_first_windows_and_never_the_training_sample(tmp_path, monkeypatch):
    import mlflow

    from monitoring.reference import gather_fallback, load_reference

    def no_registry(*_args, **_kwargs):
        raise AssertionError("a live reference must not ask MLflow for the training sample")

    monkeypatch.setattr(mlflow, "MlflowClient", no_registry)
    live = Settings(monitor_reference="live", monitor_fallback_windows=2, monitor_dir_env=tmp_path)
    assert load_reference(live, "7") is None  # nothing gathered yet: the windows are learning
    assert gather_fallback(live, "7", *log(600, seed=3), 0) == 1
    assert load_reference(live, "7") is None
    assert gather_fallback(live, "7", *log(600, seed=4), 1) == 2
    found = load_reference(live, "7")
    assert found is not None and found.source == "first windows" and len(found.quotes) == 1_200
    with pytest.raises(AssertionError, match="must not ask MLflow"):
        load_reference(Settings(monitor_dir_env=tmp_path), "7")  # the default asks the registry first
