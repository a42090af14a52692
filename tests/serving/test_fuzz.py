"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis) against the served Bento, with
every check schemathesis has: each request the schema allows is accepted (or its item is a
404), each one it forbids is a 4xx, every answer is documented and matches its schema, and
none is a 5xx. The rental_start window is relative to today; the schema states it as today's
pattern of dates (``schemas.start_pattern``), which is what the service matches."""

from __future__ import annotations

import re
from datetime import timedelta

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from bento_service.schemas import MAX_LEAD_DAYS, utc_today

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_the_api_answers_every_generated_request_as_documented(served, mode):
    schema = schemathesis.openapi.from_url(f"{served.http}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/predict", "/predict_batch", "/health"}
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not operation.body:
            continue  # GET /health takes nothing, so nothing sent to it can be invalid

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def answered_as_documented(case):
            case.call_and_validate(base_url=served.http)

        answered_as_documented()


def test_the_schema_states_the_window_the_service_enforces(http, world):
    """The window's edges, on both sides: what the published pattern admits is priced, what it
    refuses is a 400 naming rental_start."""
    spec = http.get("/openapi.json").json()
    start = spec["components"]["schemas"]["QuoteRequest"]["properties"]["rental_start"]
    admits = jsonschema_rs.validator_for({"type": "string", "pattern": start["pattern"]}).is_valid
    today = utc_today()
    inside = [today - timedelta(days=1), today, today + timedelta(days=MAX_LEAD_DAYS)]
    outside = [today - timedelta(days=2), today + timedelta(days=MAX_LEAD_DAYS + 1)]
    item = world.items[0]
    for day in inside + outside:
        answer = http.post("/predict", json={"item_id": item, "rental_start": day.isoformat(), "rental_days": 2})
        assert admits(day.isoformat()) == (day in inside), day
        assert answer.status_code == (200 if day in inside else 400), (day, answer.text)
        if day in outside:
            assert answer.json()["fields"] == ["rental_start"]
            assert str(today - timedelta(days=1)) in answer.json()["error"]
    for written in ("2027-02-30", f"{today:%Y%m%d}", f"{today}T00:00:00", "tomorrow"):
        assert not re.fullmatch(start["pattern"], written)
        answer = http.post("/predict", json={"item_id": item, "rental_start": written, "rental_days": 2})
        assert answer.status_code == 400 and answer.json()["fields"] == ["rental_start"], written


def test_a_batch_states_its_bounds(http, world):
    spec = http.get("/openapi.json").json()
    items = spec["components"]["schemas"]["BatchRequest"]["properties"]["items"]
    assert items["minItems"] == 1 and items["maxItems"] == world.settings.serve_batch_limit
    answer = http.post("/predict_batch", json={"items": []})
    assert answer.status_code == 400 and answer.json()["fields"] == ["items"]
