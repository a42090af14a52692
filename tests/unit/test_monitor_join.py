"""The prediction log's join rules (monitoring/log/join.py), its saved state and its parts: no services."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from monitoring.log import read_outcomes, read_quotes, state, store
from monitoring.log.join import Booking, Ledger, Rules
from monitoring.log.records import QuoteError, decode_quote, quote_key, quote_row
from rental.settings import Settings

S = 1_000_000  # µs in a second
T0 = 1_780_000_000 * S  # an event time in 2026
RULES = Rules(window_us=100 * S, lateness_us=10 * S, retention_us=1_000 * S, idle_s=30.0)


def quote(rid: str, at_s: float, item: str = "item_1", customer: str | None = "cust_1", price: float = 50.0) -> tuple:
    return (rid, T0 + int(at_s * S), item, customer, "dresses", "v1", 3, price)


def booking(event: str, at_s: float, customer: str = "cust_1", price: float = 45.0, booking_id: str | None = None):
    return Booking(T0 + int(at_s * S), event, booking_id or event, customer, price)


def advance_to(ledger: Ledger, at_s: float, now: float = 0.0) -> list[dict]:
    """Both sources reach ``at_s``, then a close: the watermark is at_s - lateness."""
    ledger.watermark.observe("quotes", T0 + int(at_s * S), now)
    ledger.watermark.observe("bookings", T0 + int(at_s * S), now)
    return ledger.close(now)


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["request_id"]: row for row in rows}


def test_booked_by_the_customer_in_the_window_is_the_outcome():
    ledger = Ledger(RULES, now=0.0)
    assert ledger.add_quote(quote("q1", 0), 0.0) == "new"
    ledger.add_booking(booking("b1:created", 40, price=44.0), "item_1", 0.0)
    assert advance_to(ledger, 105) == []  # watermark 95: the window [0, 100) is still open
    row = by_id(advance_to(ledger, 110))["q1"]  # watermark 100: closed
    assert row["booked"] and row["booked_any"] and not row["cancelled"] and not row["late_quote"]
    assert row["booking_id"] == "b1:created" and row["paid_per_day"] == 44.0 and row["paid_any_per_day"] == 44.0
    assert row["booked_at"] == T0 + 40 * S and row["window_end"] == T0 + 100 * S and row["closed_at"] == T0 + 100 * S
    assert row["bookings_in_window"] == 1 and row["quote_date"] == "2026-05-28"
    assert ledger.open == {}


def test_missing_outcome_is_final_unbooked_when_the_window_closes():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), 0.0)
    ledger.add_booking(booking("b_other_item", 5), "item_2", 0.0)
    ledger.add_booking(booking("b_at_end", 100), "item_1", 0.0)  # the window is [t, t + W): not in it
    row = by_id(advance_to(ledger, 200))["q1"]
    assert not row["booked"] and not row["booked_any"] and row["booking_id"] is None and row["paid_per_day"] is None
    assert row["bookings_in_window"] == 0


def test_someone_else_booking_counts_for_booked_any_only():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), 0.0)
    ledger.add_quote(quote("anon", 1, customer=None), 0.0)
    ledger.add_booking(booking("b1", 30, customer="cust_2", price=60.0), "item_1", 0.0)
    ledger.add_booking(booking("b2", 20, customer="cust_3", price=55.0), "item_1", 0.0)
    rows = by_id(advance_to(ledger, 300))
    for rid in ("q1", "anon"):
        assert not rows[rid]["booked"] and rows[rid]["booked_any"]
        assert rows[rid]["paid_any_per_day"] == 55.0  # the first by event time, not by arrival
        assert rows[rid]["bookings_in_window"] == 2


def test_late_booking_does_not_reopen_a_final_row_but_counts_for_open_ones():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q_early", 0), 0.0)
    ledger.add_quote(quote("q_later", 50), 0.0)
    first = by_id(advance_to(ledger, 120))  # watermark 110: q_early final, q_later open until 150
    assert set(first) == {"q_early"} and not first["q_early"]["booked"]
    # A booking at t=60 arrives behind the watermark: in both windows, but q_early is final.
    assert ledger.add_booking(booking("b_late", 60), "item_1", 0.0) == "new"
    assert ledger.counters["bookings_late"] == 1
    second = by_id(advance_to(ledger, 200))
    assert set(second) == {"q_later"} and second["q_later"]["booked"]
    assert ledger.counters["outcomes"] == 2  # q_early was written once, unbooked


def test_booking_within_the_lateness_is_joined():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), 0.0)
    ledger.watermark.observe("quotes", T0 + 105 * S, 0.0)
    ledger.add_booking(booking("b_early", 95), "item_1", 0.0)  # behind the newest quote by 10 s: in time
    row = by_id(advance_to(ledger, 110))["q1"]
    assert row["booked"] and row["booking_id"] == "b_early"


def test_duplicate_booking_first_wins_and_duplicate_quote_changes_nothing():
    ledger = Ledger(RULES, now=0.0)
    assert ledger.add_quote(quote("q1", 0, price=50.0), 0.0) == "new"
    assert ledger.add_quote(quote("q1", 5, price=99.0), 0.0) == "duplicate"
    assert ledger.add_booking(booking("e1", 10, price=40.0, booking_id="bk1"), "item_1", 0.0) == "new"
    assert ledger.add_booking(booking("e1", 11, price=80.0, booking_id="bk1"), "item_1", 0.0) == "duplicate"
    rows = advance_to(ledger, 500)
    assert len(rows) == 1
    assert rows[0]["price_per_day"] == 50.0 and rows[0]["paid_per_day"] == 40.0 and rows[0]["bookings_in_window"] == 1
    assert ledger.counters["quotes_duplicate"] == 1 and ledger.counters["bookings_duplicate"] == 1


def test_first_booking_of_the_customer_is_the_outcome():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), 0.0)
    ledger.add_booking(booking("b2", 70, price=70.0), "item_1", 0.0)
    ledger.add_booking(booking("b1", 30, price=30.0), "item_1", 0.0)
    row = advance_to(ledger, 500)[0]
    assert row["booking_id"] == "b1" and row["paid_per_day"] == 30.0 and row["bookings_in_window"] == 2


def test_cancelled_booking_still_counts_and_is_flagged():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), 0.0)
    ledger.add_booking(booking("bk1:created", 10, booking_id="bk1"), "item_1", 0.0)
    assert ledger.add_cancel("bk1:cancelled", "bk1", T0 + 20 * S, 0.0) == "new"
    assert ledger.add_cancel("bk1:cancelled", "bk1", T0 + 20 * S, 0.0) == "duplicate"
    row = advance_to(ledger, 500)[0]
    assert row["booked"] and row["cancelled"] and row["booking_id"] == "bk1"


def test_late_quote_is_joined_at_once_with_the_bookings_kept():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_booking(booking("b1", 210), "item_1", 0.0)
    assert advance_to(ledger, 500) == []  # watermark 490
    assert ledger.add_quote(quote("q_late", 200), 0.0) == "new"  # its window [200, 300) closed already
    row = by_id(ledger.close(0.0))["q_late"]
    assert row["late_quote"] and row["booked"] and row["paid_per_day"] == 45.0
    assert ledger.counters["quotes_late"] == 1


def test_quote_older_than_the_horizon_is_refused_and_state_is_bounded():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q_old", 0), 0.0)
    ledger.add_booking(booking("b_old", 5), "item_1", 0.0)
    advance_to(ledger, 2_000)  # watermark 1990, horizon 890: everything before is forgotten
    assert ledger.seen == {} and ledger.bookings == {} and ledger.booking_events == {}
    assert ledger.add_quote(quote("q_ancient", 800), 0.0) == "too_late"
    assert ledger.add_booking(booking("b_ancient", 800), "item_1", 0.0) == "stale"
    assert ledger.add_quote(quote("q_recent", 900), 0.0) == "new"


def test_watermark_is_held_by_the_slower_source_until_it_goes_idle():
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), now=0.0)
    assert ledger.close(now=1.0) == [] and ledger.watermark.value is None  # no booking heard yet
    ledger.add_booking(booking("b1", 50), "item_1", now=1.0)
    ledger.add_quote(quote("q2", 500), now=1.0)
    ledger.close(now=2.0)
    assert ledger.watermark.value == T0 + 40 * S  # min(500, 50) - 10
    ledger.add_quote(quote("q3", 600), now=40.0)  # bookings silent for 39 s: idle
    ledger.close(now=40.0)
    assert ledger.watermark.value == T0 + 590 * S
    ledger.close(now=80.0)  # both silent: on with the wall clock from the newest event
    assert ledger.watermark.value == T0 + (600 + 40 - 10) * S
    ledger.add_booking(booking("b2", 100), "item_1", now=81.0)  # an old booking never moves it back
    ledger.close(now=81.0)
    assert ledger.watermark.value == T0 + (600 + 40 - 10) * S


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, monitor_outcome_window_s=100, monitor_allowed_lateness_s=10,
                    monitor_retention_s=1000)  # fmt: skip


def test_saved_state_gives_the_same_outcomes(settings):
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), 0.0)
    ledger.add_quote(quote("q2", 50, customer="cust_2"), 0.0)
    ledger.add_booking(booking("bk1:created", 60, booking_id="bk1"), "item_1", 0.0)
    ledger.add_cancel("bk1:cancelled", "bk1", T0 + 70 * S, 0.0)
    ledger.add_booking(booking("bk2:created", 70, customer="cust_2", booking_id="bk2"), "item_1", 0.0)
    advance_to(ledger, 80)
    state.save(settings, state.Checkpoint(7, {("predictions", 0): 12}, ledger))
    loaded = state.load(settings, RULES, now=0.0)
    assert loaded.seq == 7 and loaded.offsets == {("predictions", 0): 12}
    again = loaded.ledger
    assert again.add_quote(quote("q1", 0), 0.0) == "duplicate"
    assert again.add_booking(booking("bk2:created", 70, booking_id="bk2"), "item_1", 0.0) == "duplicate"
    assert again.watermark.value == ledger.watermark.value
    assert advance_to(again, 300) == advance_to(ledger, 300)


def test_state_files_are_data_and_a_foreign_file_is_refused(settings):
    state.save(settings, state.Checkpoint(1, {}, Ledger(RULES, now=0.0)))
    pointer = state.state_dir(settings) / state.POINTER
    assert json.loads(pointer.read_text())["format"] == state.FORMAT
    pointer.write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(state.StateError, match="delete"):
        state.load(settings, RULES, now=0.0)


def test_one_writer_per_log(settings):
    held = state.lock(settings)
    try:
        with pytest.raises(state.StateError, match="another"):
            state.lock(settings)
    finally:
        held.close()
    state.lock(settings).close()


def prediction(rid: str, quoted_at: datetime, **features) -> bytes:
    return json.dumps({
        "schema_version": 1, "request_id": rid, "quoted_at": quoted_at.isoformat(), "protocol": "http",
        "item_id": "item_1", "customer_id": "cust_1", "rental_start": "2026-06-01", "rental_days": 3,
        "features": features, "price_per_day": 50.0, "total_price": 150.0, "currency": "GBP",
        "model_version": "3", "features_as_of": (quoted_at - timedelta(seconds=90)).isoformat(),
        "degraded": False, "cold_start": False, "latency_ms": 1.5,
    }).encode()  # fmt: skip


def test_quote_rows_flatten_features_and_bad_records_say_why():
    at = datetime(2026, 6, 1, 23, 59, 59, tzinfo=UTC)
    row = quote_row(decode_quote(prediction("q1", at, category="dresses", bookings_7d=3, brand="Acme")), 2, 41)
    assert row["quote_date"] == "2026-06-01" and row["category"] == "dresses" and row["feature_age_s"] == 90.0
    assert row["f_bookings_7d"] == 3.0 and row["f_brand"] == "Acme" and row["kafka_offset"] == 41
    assert quote_key(row)[:4] == ("q1", row["quoted_at"], "item_1", "cust_1")
    with pytest.raises(QuoteError, match="malformed JSON"):
        decode_quote(b"{not json")
    with pytest.raises(QuoteError, match="price_per_day"):
        decode_quote(prediction("q2", at).replace(b'"price_per_day": 50.0', b'"price_per_day": "cheap"'))


def test_parts_are_rewritten_not_duplicated_and_read_by_date(settings):
    at = datetime(2026, 6, 1, 23, 59, 0, tzinfo=UTC)
    rows = [quote_row(decode_quote(prediction(f"q{i}", at + timedelta(seconds=30 * i), size=i)), 0, i)
            for i in range(4)]  # fmt: skip
    assert store.write_parts(settings, 1, "quotes", rows[:1]) == 1
    assert store.write_parts(settings, 2, "quotes", rows[1:]) == 2  # crosses midnight: two days
    assert store.write_parts(settings, 2, "quotes", rows[1:]) == 2  # a replay of part 2: the same files
    assert list(read_quotes(settings)["request_id"]) == ["q0", "q1", "q2", "q3"]
    june_2 = read_quotes(settings, date(2026, 6, 2), date(2026, 6, 3))
    assert list(june_2["request_id"]) == ["q2", "q3"] and list(june_2["f_size"]) == [2.0, 3.0]
    assert store.remove_after(settings, 1) == 2 and list(read_quotes(settings)["request_id"]) == ["q0"]
    assert read_outcomes(settings).empty and "booked" in read_outcomes(settings).columns


def test_outcomes_are_read_by_quote_time_or_by_when_they_became_final(settings):
    ledger = Ledger(RULES, now=0.0)
    ledger.add_quote(quote("q1", 0), 0.0)
    ledger.add_quote(quote("q2", 3_600), 0.0)
    rows = advance_to(ledger, 3_000) + advance_to(ledger, 9_000)
    assert store.write_parts(settings, 1, "outcomes", rows) == 1
    at = datetime.fromtimestamp(T0 / S, UTC)
    assert list(read_outcomes(settings, at, at + timedelta(seconds=1))["request_id"]) == ["q1"]
    closed_late = read_outcomes(settings, at + timedelta(seconds=5_000), None, on="closed_at")
    assert list(closed_late["request_id"]) == ["q2"] and closed_late["closed_at"].iloc[0] == at + timedelta(
        seconds=8_990
    )
    with pytest.raises(ValueError, match="on must be"):
        read_outcomes(settings, on="booked_at")
