"""The alerting policy: minimum rows, consecutive failing windows, cool-down, restart safety."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring.alerts.policy import PolicyState, idempotency_key, observe
from monitoring.checks.report import Check, WindowResult
from monitoring.checks.windows import Window
from rental.settings import Settings

DAY = timedelta(days=1)
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, monitor_failing_windows=2, monitor_cooldown_windows=3, monitor_window_s=86_400)


def result(day: int, failing: bool | None, version: str = "3", reference: str = "mlflow") -> WindowResult:
    """A window's result: failing (an alarm check failed), passing, or None (too few rows)."""
    window = Window(START + day * DAY, START + (day + 1) * DAY)
    checks = [
        Check("price_bias", None if failing is None else not failing, 0.2, "within 0.12", True),
        Check("feature_drift", False, 0.9, "share < 0.5", False),
    ]  # a watch check never fails a window
    return WindowResult(window, version, reference, 800, 800, 800, {"bias": 0.2}, checks)


def run(settings, state, days):
    return [observe(state, result(d, f), settings) for d, f in days]


def test_one_failing_window_is_not_an_alarm(settings):
    state = PolicyState()
    assert run(settings, state, [(0, True), (1, False), (2, True), (3, False)]) == [None] * 4


def test_consecutive_failing_windows_raise_one_request(settings):
    state = PolicyState()
    requests = run(settings, state, [(0, False), (1, True), (2, True)])
    request = requests[-1]
    assert requests[:2] == [None, None] and request is not None
    assert request["reasons"] == ["price_bias"] and request["champion_version"] == "3"
    assert [w["window_start"] for w in request["windows"]] == [(START + DAY).isoformat(), (START + 2 * DAY).isoformat()]
    assert request["windows"][0]["failed"][0]["check"] == "price_bias"
    assert request["idempotency_key"] == idempotency_key(settings.registered_model_name, "3",
                                                         request["windows"][0]["window_start"],
                                                         request["windows"][-1]["window_end"])  # fmt: skip
    assert len(state.outbox) == 1 and state.outbox[0]["kafka"] is False


def test_windows_with_too_few_rows_neither_break_nor_extend_a_run(settings):
    state = PolicyState()
    requests = run(settings, state, [(0, True), (1, None), (2, True)])
    assert requests[:2] == [None, None] and requests[2] is not None
    assert len(requests[2]["windows"]) == 2  # the window judged neither way is not in it


def test_cool_down_then_a_new_request(settings):
    state = PolicyState()
    requests = run(settings, state, [(d, True) for d in range(8)])
    made = [d for d, r in enumerate(requests) if r is not None]
    # a request at day 1; days 2-4 are its cool-down (3 windows); still failing when it ends,
    # the run (kept during the cool-down) asks again at day 5, then days 6-8 cool down
    assert made == [1, 5]


def test_a_new_champion_starts_a_new_run(settings):
    state = PolicyState()
    assert observe(state, result(0, True, version="3"), settings) is None
    assert observe(state, result(1, True, version="4"), settings) is None
    assert observe(state, result(2, True, version="4"), settings) is not None


def test_learning_windows_are_not_judged(settings):
    state = PolicyState()
    for day in range(4):
        assert observe(state, result(day, True, reference="none yet"), settings) is None
    assert state.run == []


def test_state_survives_a_restart(settings, tmp_path):
    path = tmp_path / "policy.json"
    state = PolicyState()
    observe(state, result(0, True), settings)
    state.save(path)
    again = PolicyState.load(path)  # a restart between the two failing windows
    request = observe(again, result(1, True), settings)
    assert request is not None and len(request["windows"]) == 2
    again.save(path)
    after = PolicyState.load(path)
    assert after.outbox[0]["request"]["idempotency_key"] == request["idempotency_key"]
    assert observe(after, result(2, True), settings) is None  # in cool-down: not asked twice
