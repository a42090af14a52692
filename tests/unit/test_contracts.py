"""The published events' JSON Schema (contracts/events.schema.json) is what the models generate,
and it agrees with them: what the models encode, the schema admits; what it refuses, the
consumer's decoder refuses too."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import jsonschema_rs
import pytest
from typer.testing import CliRunner

from rental.cli import app
from streaming.catalogue.listing import Listing
from streaming.contracts import EVENTS_SCHEMA, events_schema, rendered
from streaming.events import BookingCancelled, BookingCreated, EventError, decode, encode

AT = datetime(2026, 6, 1, 10, tzinfo=UTC)
CREATED = BookingCreated(event_id="b1:created", item_id="item_1", customer_id="c1", booking_id="b1", event_time=AT,
                         rental_start=date(2026, 6, 5), rental_days=3, price_per_day=42.5)  # fmt: skip
CANCELLED = BookingCancelled(event_id="b1:cancelled", item_id="item_1", customer_id="c1", booking_id="b1",
                             event_time=AT)  # fmt: skip


def _validator(definition: str | None = None):
    schema = events_schema()
    if definition is not None:
        schema = {"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def test_the_checked_in_schema_is_what_the_models_generate():
    assert EVENTS_SCHEMA.read_text() == rendered(), (
        "contracts/events.schema.json is stale: run `rental contracts export` and commit it"
    )


def test_every_encoded_event_and_listing_is_valid_and_each_topic_takes_its_own():
    listing = Listing(item_id="item_1", brand="Maison", category="dress")
    everything, bookings, items = _validator(), _validator("BookingEvent"), _validator("Listing")
    for event in (CREATED, CANCELLED):
        assert everything.is_valid(json.loads(encode(event)))
        assert bookings.is_valid(json.loads(encode(event))) and not items.is_valid(json.loads(encode(event)))
    assert everything.is_valid(json.loads(listing.encode()))
    assert items.is_valid(json.loads(listing.encode())) and not bookings.is_valid(json.loads(listing.encode()))


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": 2},
        {"event_type": "booking_moved"},
        {"rental_days": 0},
        {"rental_days": 61},
        {"price_per_day": 0},
        {"item_id": ""},
        {"currency": "POUNDS"},
        {"event_time": "yesterday"},
        {"rental_start": "2026-02-30"},
        {"colour": "red"},
    ],
)
def test_what_the_schema_refuses_the_consumer_refuses(change):
    payload = json.loads(encode(CREATED)) | change
    assert not _validator().is_valid(payload)
    with pytest.raises(EventError):
        decode(json.dumps(payload))


@pytest.mark.parametrize("field", ["schema_version", "event_type"])
def test_producers_must_send_the_version_and_the_event_type(field):
    payload = {k: v for k, v in json.loads(encode(CANCELLED)).items() if k != field}
    assert not _validator("BookingEvent").is_valid(payload)


def test_the_check_command_fails_on_a_stale_copy(tmp_path):
    stale = tmp_path / "events.schema.json"
    stale.write_text(rendered().replace('"maxLength": 64', '"maxLength": 65', 1))
    runner = CliRunner()
    assert runner.invoke(app, ["contracts", "export", "--check", "--out", str(stale)]).exit_code == 1
    assert runner.invoke(app, ["contracts", "export", "--out", str(stale)]).exit_code == 0
    assert stale.read_text() == rendered()
    assert runner.invoke(app, ["contracts", "export", "--check", "--out", str(stale)]).exit_code == 0
