"""The API's schema says what its models enforce: the rental_start pattern, built per day, admits
exactly the dates the validator accepts (under the schema's regex engine and Python's), and gRPC
error details are cut to fit a header without losing their first problems."""

from __future__ import annotations

import re
from datetime import date, timedelta

import jsonschema_rs
import pytest
from pydantic import ValidationError

from bento_service.grpc_contract import bounded
from bento_service.schemas import QuoteRequest, start_pattern, start_window, utc_today


@pytest.mark.parametrize("today", [date(2026, 12, 3), date(2027, 2, 28), date(2028, 2, 29), date(2026, 1, 1),
                                   date(2026, 12, 31), date(2027, 3, 1), date(2099, 11, 30)])  # fmt: skip
def test_the_pattern_admits_exactly_the_window(today):
    pattern = start_pattern(today)
    schema_admits = jsonschema_rs.validator_for({"type": "string", "pattern": pattern}).is_valid
    first, last = start_window(today)
    day = today - timedelta(days=400)
    while day < today + timedelta(days=1_200):
        inside = first <= day <= last
        assert schema_admits(day.isoformat()) == inside == bool(re.fullmatch(pattern, day.isoformat())), day
        day += timedelta(days=1)
    for written in (f"{today.year + 1}-02-30", f"{today.year + 1}-13-01", f"{today.year + 1}-04-31", "2027-1-05"):
        assert not schema_admits(written) and not re.fullmatch(pattern, written)
    assert len(pattern) < 600  # a full year is three alternatives


def test_the_validator_matches_the_schema_it_publishes():
    schema = QuoteRequest.model_json_schema()["properties"]["rental_start"]
    today = utc_today()
    admits = jsonschema_rs.validator_for({"type": "string", "pattern": schema["pattern"]}).is_valid
    for offset in (-3, -2, -1, 0, 1, 365, 729, 730, 731):
        written = (today + timedelta(days=offset)).isoformat()
        try:
            QuoteRequest(item_id="a", rental_start=written, rental_days=1)
            accepted = True
        except ValidationError as exc:
            accepted = False
            assert exc.errors()[0]["loc"] == ("rental_start",)
        assert accepted == admits(written), written
    for written in ("2027-02-30", "20270101", "2027-01-01T00:00:00", 20270101, None):
        with pytest.raises(ValidationError, match="rental_start"):
            QuoteRequest(item_id="a", rental_start=written, rental_days=1)


@pytest.mark.parametrize(("days", "accepted"), [(3, True), (3.0, True), (3.5, False), ("3", False), (True, False)])
def test_rental_days_is_a_json_schema_integer(days, accepted):
    """4.0 is an integer to JSON Schema, so the API takes it; text and booleans are not."""
    try:
        QuoteRequest(item_id="a", rental_start=start_window(utc_today())[1], rental_days=days)
    except ValidationError:
        assert not accepted
    else:
        assert accepted


def test_long_error_details_keep_their_first_problems_and_say_how_many_are_left_out():
    details = "; ".join(f"items.{k}.item_id: String should match pattern 'é'" for k in range(300))
    cut = bounded(details)
    assert len(cut.encode()) <= 2_000 and cut.startswith("items.0.item_id")
    kept = cut.count("; ") + 1 - 1  # the last part is the count of the rest
    assert cut.endswith(f"; and {300 - kept} more")
    assert bounded("short") == "short"
    assert len(bounded("x" * 10_000).encode()) <= 2_000
