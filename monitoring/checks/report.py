"""One window's checks: two Evidently reports and the figures and test results read from them.

- ``drift``: every quote of the window against the reference's quotes. Feature drift with an
  explicit method and threshold per column type (numerical: normed Wasserstein distance,
  categorical: Jensen-Shannon distance, both from settings), the share of drifted features,
  drift of the prediction, and drift of the prediction per category (``GroupBy``). Data health
  in the same report: missing share per feature, degraded and cold-start shares, feature age.
- ``quality``: the quotes booked by the quoting customer, quoted price against price paid:
  the mean log ratio ln(paid / quoted) (the bias) overall and per category, MAE and MAPE overall
  and per category. Each bound is a test attached to its metric, centred on the reference's own
  value (its held-out error), so an honest model's usual error is not a failure.

The window's status comes from the tests' status, not from raw values. A check is an *alarm*
check (it can fail a window) or a *watch* check (shown, never failing a window): drift is a
watch check unless ``monitor_drift_alarms`` is set, because a seasonal business drifts every
week against any fixed sample (measured: 74 % of features drifted ten weeks after training,
with nothing shifted), while a shifted price process shows in the price error at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry: never from this product

from evidently import DataDefinition, Dataset, Report
from evidently.metrics import (
    DriftedColumnsCount,
    MeanValue,
    MissingValueCount,
    QuantileValue,
    RowCount,
    ValueDrift,
)
from evidently.metrics.group_by import GroupBy
from evidently.tests import gte, lte

from monitoring.checks.frames import booking_rate, category_of, health_columns, model_columns, outcome_columns
from monitoring.checks.windows import Window
from rental.settings import Settings


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not judged (too few rows, or nothing to compare with)
    value: float | None
    bound: str  # the rule, in words
    alarm: bool  # an alarm check fails the window; a watch check is shown only


@dataclass
class WindowResult:
    window: Window
    model_version: str
    reference: str  # where the reference came from ("mlflow", "first windows", "none yet")
    quotes: int
    outcomes: int
    booked: int
    figures: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    snapshots: dict[str, Any] = field(default_factory=dict)  # "drift", "quality" -> Evidently snapshots

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.alarm and c.passed is False]

    @property
    def status(self) -> str:
        """``ok``, ``failing``, ``too few rows`` (judged neither way), ``learning`` (no reference yet)."""
        if self.reference == "none yet":
            return "learning"
        if not any(c.passed is not None for c in self.checks if c.alarm):
            return "too few rows"
        return "failing" if self.failed else "ok"

    def summary(self) -> dict[str, Any]:
        return {
            "window_start": self.window.start.isoformat(), "window_end": self.window.end.isoformat(),
            "model_version": self.model_version, "reference": self.reference, "status": self.status,
            "quotes": self.quotes, "outcomes": self.outcomes, "booked": self.booked,
            "failed": [c.name for c in self.failed], "figures": self.figures,
            "checks": [c.__dict__ for c in self.checks],
        }  # fmt: skip


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


class _Results:
    """Values and test statuses of a snapshot, looked up by the metric object that made them."""

    def __init__(self, snapshot):
        data = snapshot.dict()
        self.values = {m["id"]: m["value"] for m in data["metrics"]}
        self.statuses: dict[str, list[str]] = {}
        for test in data["tests"]:
            self.statuses.setdefault(test["metric_config"]["metric_id"], []).append(test["status"])

    def value(self, metric, part: str | None = None) -> float | None:
        value = self.values.get(metric.get_fingerprint())
        if isinstance(value, dict):
            value = value.get(part or "share", value.get("mean"))
        return _num(value)

    def passed(self, metric) -> bool | None:
        statuses = self.statuses.get(metric.get_fingerprint())
        return None if not statuses else all(s == "SUCCESS" for s in statuses)


# Methods whose score is a p-value (drift below the threshold); the others are distances.
P_VALUE_METHODS = {"ks", "chisquare", "z", "fisher_exact", "g_test", "mannw", "t_test", "cramer_von_mises",
                   "anderson", "es", "empirical_mmd"}  # fmt: skip


def _drifted(results: _Results, metric, method: str, threshold: float) -> bool:
    """The metric's drift test, or (a group's metric, whose test Evidently files under the inner
    metric) the same rule applied to its score."""
    passed = results.passed(metric)
    if passed is not None:
        return not passed
    score = results.value(metric)
    if score is None:
        return False
    return score < threshold if method in P_VALUE_METHODS else score >= threshold


def _drift_frames(quotes: pd.DataFrame, reference: pd.DataFrame, inputs: list[str]):
    current, numerical, categorical = model_columns(quotes, inputs)
    ref, _, _ = model_columns(reference, inputs)
    current = pd.concat([current, health_columns(quotes)], axis=1)
    ref = pd.concat([ref, health_columns(reference)], axis=1)
    return current, ref, numerical, categorical


def drift_report(quotes, reference, inputs: list[str], settings: Settings, min_category_rows: int, timestamp=None):
    """The drift and health reports of a window's quotes; returns (snapshots, figures, checks)."""
    s = settings
    current, ref, numerical, categorical = _drift_frames(quotes, reference, inputs)
    features = numerical + categorical
    counts = current["category"].value_counts()
    ref_counts = ref["category"].value_counts()
    groups = [c for c in counts.index if counts[c] >= min_category_rows and ref_counts.get(c, 0) >= min_category_rows]
    feature_drift = DriftedColumnsCount(
        columns=features, drift_share=s.monitor_drift_share, num_method=s.monitor_num_drift_method,
        num_threshold=s.monitor_num_drift_threshold, cat_method=s.monitor_cat_drift_method,
        cat_threshold=s.monitor_cat_drift_threshold,
    )  # fmt: skip
    prediction = ValueDrift(column="prediction", method=s.monitor_prediction_drift_method,
                            threshold=s.monitor_prediction_drift_threshold)  # fmt: skip
    by_category = GroupBy(prediction, "category")
    ref_missing = ref[features].isna().mean()
    missing = {
        name: MissingValueCount(column=name, share_tests=[lte(min(1.0, ref_missing[name] + s.monitor_max_missing_increase))])
        for name in numerical
    }  # fmt: skip
    degraded = MeanValue(column="degraded", tests=[lte(s.monitor_max_degraded_share)])
    cold = MeanValue(column="cold_start", tests=[lte(s.monitor_max_cold_start_share)])
    age = QuantileValue(column="feature_age_s", quantile=0.95, tests=[lte(s.monitor_max_feature_age_s)])
    metrics = [RowCount(), feature_drift, prediction, *missing.values()]
    health = [m for col, m in (("degraded", degraded), ("cold_start", cold), ("feature_age_s", age))
              if current[col].notna().any()]  # fmt: skip
    definition = DataDefinition(
        numerical_columns=[*numerical, "prediction", "degraded", "cold_start", "feature_age_s"],
        categorical_columns=[*categorical, "category"],
    )
    snapshot = Report([*metrics, *health], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
        timestamp=timestamp,
        name="drift and data health",
    )
    r = _Results(snapshot)
    snapshots = {"drift": snapshot}
    drift_alarm = s.monitor_drift_alarms
    figures: dict[str, Any] = {
        "drift_share": r.value(feature_drift, "share"),
        "prediction_drift": r.value(prediction),
        "missing_share": {n: r.value(m, "share") for n, m in missing.items()},
        "degraded_share": r.value(degraded) if degraded in health else None,
        "cold_start_share": r.value(cold) if cold in health else None,
        "feature_age_p95_s": r.value(age) if age in health else None,
    }
    # Per category on a frame of two columns: a group's sub-dataset recomputes every column's
    # statistics, so the wide frame made this the costliest part of the check.
    drifted_groups: list[str] = []
    if groups:
        pair = ["prediction", "category"]
        small = DataDefinition(numerical_columns=["prediction"], categorical_columns=["category"])
        by_snapshot = Report([by_category], include_tests=True).run(
            Dataset.from_pandas(current[pair], data_definition=small),
            Dataset.from_pandas(ref[pair], data_definition=small), timestamp=timestamp, name="prediction drift by category",
        )  # fmt: skip
        snapshots["by_category"] = by_snapshot
        rc = _Results(by_snapshot)
        figures["prediction_drift_by_category"] = {g: rc.value(by_category.label_metric(g)) for g in groups}
        method, threshold = s.monitor_prediction_drift_method, s.monitor_prediction_drift_threshold
        drifted_groups = [g for g in groups if _drifted(rc, by_category.label_metric(g), method, threshold)]
    figures["categories_drifted"] = drifted_groups
    nums, cats = f"{s.monitor_num_drift_method} < {s.monitor_num_drift_threshold}", s.monitor_cat_drift_method
    checks = [
        Check("feature_drift", r.passed(feature_drift), figures["drift_share"],
              f"share of drifted features < {s.monitor_drift_share} (numerical {nums}, categorical {cats} < "
              f"{s.monitor_cat_drift_threshold})", drift_alarm),
        Check("prediction_drift", r.passed(prediction), figures["prediction_drift"],
              f"{s.monitor_prediction_drift_method} < {s.monitor_prediction_drift_threshold}", drift_alarm),
        Check("prediction_drift_by_category", not drifted_groups if groups else None, float(len(drifted_groups)),
              f"no category's prediction drifts ({', '.join(drifted_groups) or 'none did'})", drift_alarm),
        Check("missing_features", all(r.passed(m) is not False for m in missing.values()),
              max((v for v in figures["missing_share"].values() if v is not None), default=None),
              f"each feature's missing share <= the reference's + {s.monitor_max_missing_increase}", True),
    ]  # fmt: skip
    for name, metric, bound in (("degraded_quotes", degraded, f"share <= {s.monitor_max_degraded_share}"),
                                ("cold_start_quotes", cold, f"share <= {s.monitor_max_cold_start_share}"),
                                ("feature_age", age, f"p95 <= {s.monitor_max_feature_age_s:g} s")):  # fmt: skip
        if metric in health:
            checks.append(Check(name, r.passed(metric), r.value(metric), bound, True))
    return snapshots, figures, checks


def quality_report(
    booked: pd.DataFrame, reference: pd.DataFrame, settings: Settings, min_category_rows: int, timestamp=None
):
    """Quoted against paid on booked quotes; returns (snapshot, figures, checks)."""
    s = settings
    ref_bias = float(reference["log_ratio"].mean())
    ref_mape = float(reference["ape"].mean())
    counts = booked["category"].value_counts()
    ref_by_cat = reference.groupby("category", observed=True)["log_ratio"].agg(["mean", "count"])
    groups = [
        c for c in counts.index if counts[c] >= min_category_rows and ref_by_cat["count"].get(c, 0) >= min_category_rows
    ]
    bias = MeanValue(column="log_ratio", tests=[gte(ref_bias - s.monitor_max_bias), lte(ref_bias + s.monitor_max_bias)])
    mape = MeanValue(column="ape", tests=[lte(ref_mape * s.monitor_max_mape_ratio)])
    mae = MeanValue(column="abs_error")
    # One GroupBy per category bound: each category is held to its own reference bias.
    per_cat = {
        g: GroupBy(MeanValue(column="log_ratio", tests=[
            gte(ref_by_cat.loc[g, "mean"] - s.monitor_max_category_bias),
            lte(ref_by_cat.loc[g, "mean"] + s.monitor_max_category_bias)]), "category")
        for g in groups
    }  # fmt: skip
    mae_by = GroupBy(MeanValue(column="abs_error"), "category")
    mape_by = GroupBy(MeanValue(column="ape"), "category")
    metrics = [RowCount(), bias, mape, mae]
    for g, container in per_cat.items():
        metrics.append(container.label_metric(g))
    if groups:
        metrics += [mae_by, mape_by]
    definition = DataDefinition(numerical_columns=["prediction", "paid", "log_ratio", "abs_error", "ape"],
                                categorical_columns=["category"])  # fmt: skip
    snapshot = Report(metrics, include_tests=True).run(
        Dataset.from_pandas(booked, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
        timestamp=timestamp,
        name="price quality",
    )
    r = _Results(snapshot)
    cat_bias = {g: r.value(per_cat[g].label_metric(g)) for g in groups}
    cat_failed = [g for g in groups if r.passed(per_cat[g].label_metric(g)) is False]
    figures = {
        "bias": r.value(bias),
        "reference_bias": ref_bias,
        "mape": r.value(mape),
        "reference_mape": ref_mape,
        "mae": r.value(mae),
        "reference_mae": float(reference["abs_error"].mean()),
        "bias_by_category": cat_bias,
        "reference_bias_by_category": {g: float(ref_by_cat.loc[g, "mean"]) for g in groups},
        "mae_by_category": {g: r.value(mae_by.label_metric(g)) for g in groups},
        "mape_by_category": {g: r.value(mape_by.label_metric(g)) for g in groups},
        "categories_mispriced": cat_failed,
    }
    worst = max((abs(cat_bias[g] - figures["reference_bias_by_category"][g]) for g in groups if cat_bias[g] is not None),
                default=None)  # fmt: skip
    checks = [
        Check("price_bias", r.passed(bias), figures["bias"],
              f"mean ln(paid/quoted) within {s.monitor_max_bias} of the reference's {ref_bias:.3f}", True),
        Check("price_bias_by_category", not cat_failed if groups else None, worst,
              f"each category's mean ln(paid/quoted) within {s.monitor_max_category_bias} of its reference "
              f"({', '.join(cat_failed) or 'none outside'})", True),
        Check("mape", r.passed(mape), figures["mape"],
              f"MAPE <= {s.monitor_max_mape_ratio} x the reference's {ref_mape:.3f}", True),
    ]  # fmt: skip
    return snapshot, figures, checks


def check_window(window: Window, model_version: str, quotes: pd.DataFrame, outcomes: pd.DataFrame,
                 reference, settings: Settings, dlq_rate: float | None = None,
                 baseline_booking_rate: float | None = None) -> WindowResult:  # fmt: skip
    """All checks of one window. ``reference``: a ``monitoring.reference.Reference`` (None while
    the fallback reference is still being gathered: figures only, nothing judged)."""
    s = settings
    if len(outcomes) and "request_id" in quotes:  # the outcome rows carry no features: the quote's category
        categories = pd.Series(category_of(quotes).to_numpy(), index=quotes["request_id"].to_numpy())
        categories = categories[~categories.index.duplicated()]
        known = outcomes["category"] if "category" in outcomes else pd.Series(None, index=outcomes.index)
        outcomes = outcomes.assign(category=known.where(known.notna(), outcomes["request_id"].map(categories)))
    booked = outcome_columns(outcomes)
    rate = booking_rate(outcomes)
    result = WindowResult(window, model_version, reference.source if reference else "none yet", len(quotes),
                          len(outcomes), len(booked), {"booking_rate": rate, "dlq_rate": dlq_rate})  # fmt: skip
    result.figures["quoted_mean"] = _num(quotes["price_per_day"].mean()) if len(quotes) else None
    if reference is None:
        return result
    judged = len(quotes) >= s.monitor_min_rows
    if judged:
        inputs = [n for n in reference.inputs if n not in s.train_excluded_features]  # what the model reads
        snapshots, figures, checks = drift_report(
            quotes, reference.quotes, inputs, s, s.monitor_min_category_rows, window.end
        )
        result.snapshots |= snapshots
        result.figures |= figures
        result.checks += checks
    if len(booked) >= s.monitor_min_outcomes and len(reference.booked) >= s.monitor_min_outcomes:
        snapshot, figures, checks = quality_report(booked, reference.booked, s, s.monitor_min_category_rows, window.end)
        result.snapshots["quality"] = snapshot
        result.figures |= figures
        result.checks += checks
    if judged and rate is not None and baseline_booking_rate:
        change = rate / baseline_booking_rate - 1
        result.figures["booking_rate_change"] = change
        result.checks.append(Check("booking_rate", abs(change) <= s.monitor_max_booking_rate_change, rate,
                                   f"within {s.monitor_max_booking_rate_change:.0%} of {baseline_booking_rate:.3f} "
                                   "(the first windows after promotion)", True))  # fmt: skip
    if judged and dlq_rate is not None:
        result.checks.append(Check("dead_letters", dlq_rate <= s.monitor_max_dlq_rate, dlq_rate,
                                   f"dead letters / bookings <= {s.monitor_max_dlq_rate}", True))  # fmt: skip
    if not judged:  # too few rows: figures only, no alarm either way
        for check in result.checks:
            check.passed = None
    return result
