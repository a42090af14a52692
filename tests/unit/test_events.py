"""Event schemas: round trips, and bad payloads rejected with a reason that names the field."""

import json
from datetime import UTC, date, datetime

import pytest

from streaming.events import BookingCancelled, BookingCreated, EventError, decode, encode


def _created(**overrides):
    fields = dict(
        event_id="e1", booking_id="b1", item_id="item_1", customer_id="c1",
        event_time=datetime(2026, 6, 1, 10, tzinfo=UTC), rental_start=date(2026, 6, 5),
        rental_days=3, price_per_day=42.5,
    )  # fmt: skip
    fields.update(overrides)
    return BookingCreated(**fields)


def test_created_and_cancelled_round_trip():
    created = _created()
    cancelled = BookingCancelled(event_id="e2", booking_id="b1", item_id="item_1", customer_id="c1",
                                 event_time=datetime(2026, 6, 2, tzinfo=UTC))  # fmt: skip
    assert decode(encode(created)) == created
    assert decode(encode(cancelled)) == cancelled
    assert json.loads(encode(created))["schema_version"] == 1


def _payload(**changes):
    raw = json.loads(encode(_created()))
    raw.update(changes)
    return json.dumps({k: v for k, v in raw.items() if v is not None or k not in changes}).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (_payload(schema_version=7), "schema_version: unsupported version 7"),
        (json.dumps({"event_type": "booking_created"}).encode(), "schema_version: field required"),
        (_payload(price_per_day=-3), "price_per_day: Input should be greater than 0"),
        (_payload(rental_days=0), "rental_days: Input should be greater than or equal to 1"),
        (_payload(item_id=None), "item_id: Field required"),
        (_payload(event_type="booking_teleported"), "does not match any of the expected tags"),
        (_payload(event_time="2026-06-01T10:00:00"), "event_time: Value error, must carry a time zone"),
        (_payload(rental_start="2026-05-01"), "rental_start: Value error, rental_start 2026-05-01 is before"),
        (_payload(surprise=1), "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_payloads_are_rejected_with_the_field_and_problem(payload, reason):
    with pytest.raises(EventError, match=reason.replace("(", r"\(")):
        decode(payload)


def test_event_time_is_normalised_to_utc():
    event = decode(_payload(event_time="2026-06-01T12:00:00+02:00"))
    assert event.event_time == datetime(2026, 6, 1, 10, tzinfo=UTC)
