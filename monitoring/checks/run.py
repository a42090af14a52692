"""`rental monitor check`: every closed window of the log not yet checked, in order.

For each window: the champion's quotes and outcomes from the log, the reference of that model
version, the checks, the saved reports, the workspace, then the policy; a retrain request is
delivered before the next window. The policy's state is saved after each window, so a run
stopped part way resumes at the next window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from monitoring.alerts.policy import PolicyState, observe, state_path
from monitoring.alerts.publish import deliver
from monitoring.checks.report import WindowResult, check_window
from monitoring.checks.windows import Window, closed_until, windows_between
from monitoring.reference import Reference, gather_fallback, load_reference
from rental.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class CheckRun:
    results: list[WindowResult] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def log_span(settings: Settings, since: datetime | None) -> tuple[datetime | None, datetime | None]:
    """(first quote time to check from, the end of the newest closed window). The log's
    watermark says how far outcomes are final; without a checkpoint yet (a log written by other
    means), the newest outcome row's ``closed_at`` does."""
    from monitoring.log import read_outcomes, read_status

    outcomes = read_outcomes(settings, since)
    if outcomes.empty:
        return None, None
    first = outcomes["quoted_at"].min() if since is None else since
    status = read_status(settings)
    final = outcomes["closed_at"].max()
    if status and status.get("watermark"):
        final = pd.Timestamp(status["watermark"], unit="us", tz="UTC")
    until = closed_until(final, timedelta(seconds=settings.monitor_outcome_window_s))
    return pd.Timestamp(first).to_pydatetime(), until


def _champion_rows(quotes: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """The window's model: the version that made most of its quotes (a promotion mid-window
    leaves the other version's few quotes out of this window's checks)."""
    version = str(quotes["model_version"].mode().iloc[0])
    return version, quotes[quotes["model_version"] == version], outcomes[outcomes["model_version"] == version]


def run_checks(settings: Settings, until: datetime | None = None, on_window: Callable[[WindowResult], None] | None = None,
               dlq: bool = True, workspace: bool = True) -> CheckRun:  # fmt: skip
    """Check the closed windows after the last one checked (up to ``until`` if given)."""
    from monitoring.checks.dead_letters import dlq_rate
    from monitoring.views.store import save_window
    from monitoring.views.workspace import add_snapshots

    path = state_path(settings)
    state = PolicyState.load(path)
    out = CheckRun()
    out.problems += deliver(settings, state)  # what an earlier run could not deliver
    state.save(path)
    since = datetime.fromisoformat(state.last_window_end) if state.last_window_end else None
    first, closed = log_span(settings, since)
    if first is None or closed is None:
        return out
    end = min(closed, until) if until else closed
    references: dict[str, Reference | None] = {}
    size = timedelta(seconds=settings.monitor_window_s)
    for window in windows_between(first, end, size):
        if since is not None and window.start < since:
            continue
        result = _check_one(settings, state, window, references, dlq_rate if dlq else None)
        if result is None:
            state.last_window_end = window.end.isoformat()
            state.save(path)
            continue
        folder = save_window(settings, result)
        if workspace and result.snapshots:
            add_snapshots(settings, result.snapshots)
        request = observe(state, result, settings, str(folder))
        state.save(path)  # the request is in the outbox before it is sent
        if request is not None:
            out.requests.append(request)
            out.problems += deliver(settings, state)
            state.save(path)
        out.results.append(result)
        if on_window:
            on_window(result)
    return out


def _check_one(settings: Settings, state: PolicyState, window: Window, references: dict,
               dlq_rate: Callable | None) -> WindowResult | None:  # fmt: skip
    from monitoring.log import read_outcomes, read_quotes

    quotes = read_quotes(settings, window.start, window.end)
    if quotes.empty:
        return None
    outcomes = read_outcomes(settings, window.start, window.end)
    version, quotes, outcomes = _champion_rows(quotes, outcomes)
    if version not in references:
        references[version] = load_reference(settings, version)
    reference = references[version]
    rate = dlq_rate(settings, window) if dlq_rate else None
    gathered = state.first_windows.get(version, 0)
    rates = state.booking_rates.setdefault(version, [])
    baseline = sum(rates) / len(rates) if len(rates) >= settings.monitor_fallback_windows else None
    result = check_window(window, version, quotes, outcomes, reference, settings, rate, baseline)
    enough = len(quotes) >= settings.monitor_min_rows
    if reference is None and enough:  # the fallback rule: this model's first windows are its reference
        state.first_windows[version] = gather_fallback(settings, version, quotes, outcomes, gathered)
        if state.first_windows[version] >= settings.monitor_fallback_windows:
            references[version] = load_reference(settings, version)
    if enough and baseline is None and result.figures.get("booking_rate") is not None:
        rates.append(result.figures["booking_rate"])
    return result
