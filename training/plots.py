"""The plots a person looks at before trusting a model: each one a PNG logged with the run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xgboost as xgb


def predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.hexbin(actual, predicted, gridsize=60, bins="log", xscale="log", yscale="log", mincnt=1, cmap="viridis")
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="red", lw=1, label="perfect")
    ax.set(xlabel="paid price per day", ylabel="predicted price per day", title="Validation: predicted against paid")
    ax.legend()
    return _save(fig, path)


def error_by(table: pd.DataFrame, title: str, xlabel: str, path: Path, kind: str = "bar") -> Path:
    """``table``: MAE per group (rows) and predictor (columns), from ``evaluate.by_group``."""
    fig, ax = plt.subplots(figsize=(9, 5))
    table = table.set_axis([_label(g) for g in table.index])  # a catalogue's names can run to hundreds of characters
    table.drop(columns="bookings").plot(kind=kind, ax=ax, **({} if kind == "bar" else {"marker": "o"}))
    ax.set(xlabel=xlabel, ylabel="MAE (price per day)", title=title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _label(group, width: int = 32) -> str:
    text = str(group)
    return text if len(text) <= width else text[: width - 1] + "…"


def feature_importance(booster: xgb.Booster, path: Path) -> Path:
    gain = pd.Series(booster.get_score(importance_type="total_gain")).sort_values()
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(gain))))
    (gain / gain.sum()).plot(kind="barh", ax=ax)
    ax.set(xlabel="share of total gain", title="Feature importance")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
