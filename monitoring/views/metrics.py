"""The latest window's figures in Prometheus' text format, for a dashboard to scrape.

Written to ``<monitor_dir>/metrics.prom`` after every check run (node_exporter's textfile
collector reads such a file), and served over HTTP by ``rental monitor check --serve-metrics``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from rental.settings import Settings

PREFIX = "rental_monitor_"


def registry_for(windows: list[dict[str, Any]], requests_sent: int, log_newest: datetime | None) -> CollectorRegistry:
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels=()):
        return Gauge(PREFIX + name, doc, labels, registry=registry)

    figures = {
        "drift_share": ("drift_share", "share of the model's features drifted in the latest window"),
        "prediction_drift": ("prediction_drift", "drift score of the quoted price in the latest window"),
        "mae": ("mae", "mean absolute error of quoted against paid price per day"),
        "mape": ("mape", "mean absolute percentage error of quoted against paid"),
        "bias": ("price_bias", "mean ln(paid / quoted)"),
        "booking_rate": ("booking_rate", "share of quotes booked by the quoting customer"),
        "degraded_share": ("degraded_share", "share of quotes priced from last-known features"),
        "feature_age_p95_s": ("feature_age_p95_seconds", "95th percentile of quote time minus features_as_of"),
        "dlq_rate": ("dead_letter_rate", "dead letters per booking"),
    }
    latest = windows[-1] if windows else None
    if latest is not None:
        labels = ("model_version",)
        for key, (name, doc) in figures.items():
            value = latest["figures"].get(key)
            if value is not None:
                gauge(name, doc, labels).labels(latest["model_version"]).set(value)
        gauge("window_failing", "1 when the latest window failed an alarm check", labels).labels(
            latest["model_version"]).set(1.0 if latest["status"] == "failing" else 0.0)  # fmt: skip
        end = datetime.fromisoformat(latest["window_end"])
        gauge("window_end_timestamp_seconds", "end of the latest checked window (event time)").set(end.timestamp())
        gauge("check_lag_seconds", "now minus the end of the latest checked window").set(
            (datetime.now(UTC) - end).total_seconds()
        )
    if log_newest is not None:
        gauge("log_lag_seconds", "now minus the newest quote in the prediction log").set(
            (datetime.now(UTC) - log_newest).total_seconds()
        )
    gauge("retrain_requests_sent", "retrain requests delivered (kept keys)").set(requests_sent)
    return registry


def write_textfile(settings: Settings, registry: CollectorRegistry) -> str:
    path = settings.monitor_dir / "metrics.prom"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = generate_latest(registry).decode()
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text
