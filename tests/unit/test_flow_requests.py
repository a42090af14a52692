"""The retrain requests' rules: what a request starts, duplicates, the cool-down, bad records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from flows.ledger import KEYS_KEPT, BadRequest, Ledger, decide, parse

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
MODEL = "rental-price"


def request(key: str = "k1", model: str = MODEL, **extra) -> bytes:
    return json.dumps({"schema_version": 1, "idempotency_key": key, "model_name": model,
                       "champion_version": "3", "reasons": ["price_bias"]} | extra).encode()  # fmt: skip


def test_a_first_request_starts_a_run():
    decision = decide(Ledger(), parse(request()), NOW, 3600, MODEL)
    assert decision.action == "start" and "price_bias" in decision.reason


def test_a_handled_key_starts_nothing_whatever_came_of_it():
    ledger = Ledger()
    ledger.remember("k1", {"status": "failed", "at": NOW.isoformat()})
    decision = decide(ledger, parse(request("k1")), NOW + timedelta(days=30), 3600, MODEL)
    assert decision.action == "duplicate" and "failed" in decision.reason


def test_the_cool_down_runs_from_the_last_requested_start():
    ledger = Ledger(last_started_at=NOW.isoformat())
    inside = decide(ledger, parse(request("k2")), NOW + timedelta(seconds=3599), 3600, MODEL)
    assert inside.action == "cooldown" and "1 s left" in inside.reason
    assert decide(ledger, parse(request("k2")), NOW + timedelta(seconds=3600), 3600, MODEL).action == "start"
    assert decide(ledger, parse(request("k2")), NOW, 0, MODEL).action == "start"


def test_a_request_for_another_model_is_not_this_listeners():
    decision = decide(Ledger(), parse(request(model="other")), NOW, 3600, MODEL)
    assert decision.action == "other_model" and "'other'" in decision.reason


def test_the_ledger_survives_a_restart_and_forgets_only_the_oldest_keys(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(last_started_at=NOW.isoformat())
    for i in range(KEYS_KEPT + 2):
        ledger.remember(f"k{i}", {"status": "started"})
    ledger.reject({"reason": "not JSON"})
    ledger.save(path)
    ledger.save(path)  # saved again: replaced, not added to
    again = Ledger.load(path)
    assert again.last_started_at == NOW.isoformat() and again.rejected == [{"reason": "not JSON"}]
    assert len(again.handled) == KEYS_KEPT and "k0" not in again.handled and f"k{KEYS_KEPT + 1}" in again.handled
    assert decide(again, parse(request("k5")), NOW + timedelta(days=1), 3600, MODEL).action == "duplicate"


def test_an_empty_ledger_saves_and_loads(tmp_path):
    Ledger().save(tmp_path / "ledger.sqlite")
    assert Ledger.load(tmp_path / "ledger.sqlite") == Ledger()


def test_a_ledger_of_another_shape_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "ledger.sqlite"
    path.write_text('{"a JSON file": "not the ledger"}')
    with pytest.raises(ValueError, match="move it away"):
        Ledger.load(path)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty record"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'{"schema_version": 2, "idempotency_key": "k", "model_name": "m"}', "schema_version"),
        (b'{"schema_version": 1, "model_name": "m"}', "idempotency_key: Field required"),
        (b'{"schema_version": 1, "idempotency_key": "a key", "model_name": "m"}', "idempotency_key"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_a_bad_record_says_why(value, reason):
    with pytest.raises(BadRequest, match=reason):
        parse(value)


def test_monitorings_own_request_parses_with_its_extra_fields():
    from monitoring.alerts.policy import retrain_request
    from rental.settings import Settings

    window = {"window_start": "2026-04-09T00:00:00+00:00", "window_end": "2026-04-16T00:00:00+00:00",
              "quotes": 900, "booked": 700, "failed": [{"check": "price_bias", "value": 0.2, "bound": "0.12"}],
              "figures": {}, "report": None}  # fmt: skip
    sent = retrain_request(Settings(), "7", [window])
    parsed = parse(json.dumps(sent).encode())
    assert parsed.idempotency_key == sent["idempotency_key"] and parsed.reasons == ["price_bias"]
