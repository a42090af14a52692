"""The alerting policy: which windows count, when they become an alarm, and the cool-down.

Rules, in order, for each checked window of the champion:
1. A window with fewer than ``monitor_min_rows`` quotes (or still gathering a fallback
   reference) is judged neither way: it neither extends nor breaks a run of failing windows.
2. A failing window (an alarm check failed) extends the run; a passing one ends it.
3. When the run reaches ``monitor_failing_windows`` and the last request's cool-down
   (``monitor_cooldown_windows`` windows after the window that raised it) is over, ONE retrain
   request is made from the run's windows, and the run starts again.
4. A new champion starts a new run (the cool-down stays: a request is already out).

The state (the run, the cool-down, the last window seen, requests not yet delivered) is saved
atomically after every window, so a restart resumes where it stopped and never asks twice: a
request is put in the state's outbox before it is sent, and leaves it only when delivered.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitoring.checks.report import WindowResult
from rental.settings import Settings

SCHEMA_VERSION = 1
KEPT_FIGURES = ("bias", "reference_bias", "mape", "reference_mape", "mae", "booking_rate", "drift_share",
                "prediction_drift", "categories_mispriced", "categories_drifted", "bias_by_category",
                "degraded_share", "cold_start_share", "feature_age_p95_s", "dlq_rate")  # fmt: skip


@dataclass
class PolicyState:
    model_version: str | None = None
    run: list[dict] = field(default_factory=list)  # the current run of failing windows (summaries)
    cooldown_until: str | None = None  # ISO end of the last window still in cool-down
    last_window_end: str | None = None  # the newest window already checked
    first_windows: dict[str, int] = field(default_factory=dict)  # version -> fallback windows gathered
    booking_rates: dict[str, list[float]] = field(default_factory=dict)  # version -> first windows' rates
    outbox: list[dict] = field(default_factory=list)  # requests made, not yet delivered everywhere
    sent: list[str] = field(default_factory=list)  # idempotency keys delivered (newest last)

    @classmethod
    def load(cls, path: Path) -> PolicyState:
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def state_path(settings: Settings) -> Path:
    return settings.monitor_dir / "alerts" / "policy.json"


def _window_summary(result: WindowResult, report_dir: str | None) -> dict[str, Any]:
    return {
        "window_start": result.window.start.isoformat(), "window_end": result.window.end.isoformat(),
        "quotes": result.quotes, "booked": result.booked,
        "failed": [{"check": c.name, "value": c.value, "bound": c.bound} for c in result.failed],
        "figures": {k: result.figures.get(k) for k in KEPT_FIGURES if result.figures.get(k) is not None},
        "report": report_dir,
    }  # fmt: skip


def idempotency_key(model_name: str, version: str, first_start: str, last_end: str) -> str:
    """Same model, version and windows: same key, so a receiver can drop a repeat."""
    return hashlib.sha256(f"{model_name}|{version}|{first_start}|{last_end}".encode()).hexdigest()[:32]


def retrain_request(settings: Settings, version: str, run: list[dict]) -> dict[str, Any]:
    reasons = sorted({f["check"] for w in run for f in w["failed"]})
    return {
        "schema_version": SCHEMA_VERSION,
        "idempotency_key": idempotency_key(
            settings.registered_model_name, version, run[0]["window_start"], run[-1]["window_end"]
        ),
        "model_name": settings.registered_model_name,
        "champion_version": version,
        "reasons": reasons,
        "explanations": sorted({f"{f['check']}: {f['bound']}" for w in run for f in w["failed"]}),
        "windows": run,
        "window_s": settings.monitor_window_s,
        "requested_at_window_end": run[-1]["window_end"],
    }


def observe(state: PolicyState, result: WindowResult, settings: Settings,
            report_dir: str | None = None) -> dict[str, Any] | None:  # fmt: skip
    """Apply the rules to one window; returns the retrain request it raises, if any."""
    end = result.window.end.isoformat()
    state.last_window_end = end
    if state.model_version != result.model_version:
        state.model_version, state.run = result.model_version, []
    if result.status in ("learning", "too few rows"):
        return None
    if result.status == "ok":
        state.run = []
        return None
    state.run.append(_window_summary(result, report_dir))
    if len(state.run) < settings.monitor_failing_windows:
        return None
    if state.cooldown_until and end <= state.cooldown_until:
        state.run = state.run[-settings.monitor_failing_windows :]  # still failing; asked already
        return None
    request = retrain_request(settings, result.model_version, state.run)
    cooldown = result.window.end + timedelta(seconds=settings.monitor_window_s * settings.monitor_cooldown_windows)
    state.cooldown_until = cooldown.isoformat()
    state.run = []
    state.outbox.append({"request": request, "kafka": False, "webhook": settings.monitor_webhook_url is None})
    return request


def in_cooldown(state: PolicyState, moment: datetime) -> bool:
    return bool(state.cooldown_until) and moment.isoformat() <= state.cooldown_until
