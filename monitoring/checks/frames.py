"""The columns the checks read, built the same way from the log and from the reference.

Both arrive in the log's shape (``monitoring/log/records.py``): features as ``f_<name>``
columns, the quote's ``price_per_day``, and for outcomes ``booked`` and ``paid_per_day``. Here
they become one frame per window:

- the model's input features, times turned into ages at the quote (``listed_at`` ->
  ``item_age_days``, ``last_booking_at`` -> ``days_since_last_booking``) plus the request's own
  ``lead_days`` and ``rental_days``: what drift is measured on;
- ``prediction`` (the quoted price), ``category``, ``degraded``, ``cold_start``,
  ``feature_age_s``: what data health reads;
- for quotes with a known outcome, ``paid`` and the errors quality reads: ``log_ratio`` =
  ln(paid / quoted), ``abs_error`` and ``ape`` (absolute percentage error).

Calendar features (start month, season, weekday) are left out of drift on purpose: a window of
days always differs from a year's sample in them, so they would drift in every window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_PREFIX = "f_"  # as the log writes them (monitoring.log.records)
TIME_FEATURES = {"listed_at": "item_age_days", "last_booking_at": "days_since_last_booking"}
CALENDAR = ("start_month", "start_season", "start_weekday")
CATEGORY_FEATURES = ("category", "item_category")  # the first present names a quote's category
DAY_S = 86_400.0


def _times(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def category_of(frame: pd.DataFrame) -> pd.Series:
    """The log's ``category`` column where set, else the quote's category feature."""
    out = frame["category"].astype(object) if "category" in frame else pd.Series(None, index=frame.index, dtype=object)
    for name in CATEGORY_FEATURES:
        column = FEATURE_PREFIX + name
        if column in frame:
            out = out.where(out.notna(), frame[column].astype(object))
    return out.fillna("(none)").astype(str)


def model_columns(frame: pd.DataFrame, inputs: list[str]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The drift columns of ``frame``: (columns, numerical names, categorical names). ``inputs``:
    the model's feature names (the reference says which); absent ones are all missing."""
    quoted = _times(frame["quoted_at"])
    out, numerical, categorical = {}, [], []
    for name in inputs:
        if name in CALENDAR:
            continue
        values = frame.get(FEATURE_PREFIX + name)
        if values is None:
            values = pd.Series(np.nan, index=frame.index)
        if name in TIME_FEATURES:
            age = (quoted - _times(values)).dt.total_seconds() / DAY_S
            out[TIME_FEATURES[name]] = age.astype("float64")
            numerical.append(TIME_FEATURES[name])
        elif pd.api.types.is_numeric_dtype(values) or values.isna().all():
            out[name] = values.astype("float64")
            numerical.append(name)
        else:
            out[name] = values.astype(object).where(values.notna(), None).astype(str).replace("None", "(missing)")
            categorical.append(name)
    if "rental_start" in frame:
        start = pd.to_datetime(frame["rental_start"]).dt.tz_localize(None).dt.normalize()
        lead = (start - quoted.dt.tz_localize(None).dt.normalize()).dt.days.clip(lower=0)
        out["lead_days"] = lead.astype("float64")
        numerical.append("lead_days")
    if "rental_days" in frame and "rental_days" not in out:
        out["rental_days"] = frame["rental_days"].astype("float64")
        numerical.append("rental_days")
    return pd.DataFrame(out, index=frame.index), numerical, categorical


def health_columns(frame: pd.DataFrame) -> pd.DataFrame:
    def flag(name: str) -> pd.Series:
        if name not in frame:
            return pd.Series(np.nan, index=frame.index)
        return frame[name].astype("float64")

    age = frame["feature_age_s"].astype("float64") if "feature_age_s" in frame else pd.Series(np.nan, index=frame.index)
    return pd.DataFrame({
        "prediction": frame["price_per_day"].astype("float64"), "category": category_of(frame),
        "degraded": flag("degraded"), "cold_start": flag("cold_start"), "feature_age_s": age,
    }, index=frame.index)  # fmt: skip


def outcome_columns(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Quotes whose outcome is a booking by the quoting customer, with their errors."""
    booked = outcomes[outcomes["booked"].fillna(False).astype(bool) & outcomes["paid_per_day"].notna()]
    quoted = booked["price_per_day"].astype("float64").to_numpy()
    paid = booked["paid_per_day"].astype("float64").to_numpy()
    valid = (quoted > 0) & (paid > 0)
    booked, quoted, paid = booked[valid], quoted[valid], paid[valid]
    return pd.DataFrame({
        "prediction": quoted, "paid": paid, "category": category_of(booked).to_numpy(),
        "log_ratio": np.log(paid / quoted), "abs_error": np.abs(paid - quoted), "ape": np.abs(paid - quoted) / paid,
    })  # fmt: skip


def booking_rate(outcomes: pd.DataFrame) -> float | None:
    if outcomes.empty or "booked" not in outcomes:
        return None
    return float(outcomes["booked"].fillna(False).astype(bool).mean())
