"""The prediction log against the real broker: `rental monitor run` SIGKILLed mid-window and
restarted logs every quote exactly once, and every closed window's outcome is the one the
stated rules give (worked out independently in tests/worlds/prediction_log_world.py)."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from bento_service.schemas import PredictionRecord
from monitoring.log import read_outcomes, read_quotes, read_rejected, read_status
from streaming.events import BookingCreated
from tests.worlds.prediction_log_world import expected_outcomes, make_log_world, merged, traffic
from tests.worlds.stream_world import kill, wait_for

pytestmark = pytest.mark.integration
WINDOW_S = 120


def status(world) -> dict:
    return read_status(world.settings) or {"counters": {}, "open_quotes": 0, "seq": 0}


def test_killed_mid_window_and_restarted_the_log_is_exact(tmp_path, settings):
    world = make_log_world(
        tmp_path, settings,
        RENTAL_MONITOR_OUTCOME_WINDOW_S=str(WINDOW_S),
        RENTAL_MONITOR_ALLOWED_LATENESS_S="300",  # event time the topics' partitions may drift apart
        RENTAL_MONITOR_RETENTION_S="3600",
        RENTAL_MONITOR_IDLE_S="600",  # no wall-clock advance: only event time closes windows here
        RENTAL_MONITOR_CHECKPOINT_EVERY_S="0.3",
    )  # fmt: skip
    producer = world.producer()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    t = traffic(12_000, start, per_s=5.0, window_s=WINDOW_S)
    pairs = merged(t)
    first, second = pairs[: len(pairs) // 2], pairs[len(pairs) // 2 :]
    first_quotes = sum(isinstance(x, PredictionRecord) for _, x in first)
    redelivered_quotes = [q for _, q in first if isinstance(q, PredictionRecord)][:300]
    redelivered_bookings = [e.model_copy(update={"price_per_day": 1.0})  # same event id, another price: ignored
                            for _, e in first if isinstance(e, BookingCreated)][:100]  # fmt: skip
    garbage = [(world.settings.topic_predictions, b"not json"),
               (world.settings.topic_predictions, b'{"schema_version": 1, "request_id": "x"}'),
               (world.settings.topic_predictions, t.quotes[0].model_dump_json().encode().replace(b'"http"', b'"ftp"')),
               (world.settings.topic_bookings, b"{}")]  # fmt: skip
    try:
        monitor = world.monitor()
        world.send_in_order(producer, first)
        wait_for(lambda: status(world)["counters"].get("quotes_logged", 0) == first_quotes
                 and status(world)["open_quotes"] > 0 and status(world)["counters"].get("outcomes_logged", 0) > 0,
                 60, "the first half logged, some windows closed and some open")  # fmt: skip

        # The second half arrives while the monitor works through it; it is SIGKILLed part way.
        def send_second_half() -> None:
            for i in range(0, len(second), 300):
                world.send_in_order(producer, second[i : i + 300])
                time.sleep(0.05)

        sender = threading.Thread(target=send_second_half)
        sender.start()
        time.sleep(0.8)
        before = status(world)
        kill(monitor)
        sender.join()
        assert before["open_quotes"] > 0, "killed mid-window"
        assert before["counters"]["quotes_logged"] < len(t.quotes), "killed before the stream was through"

        monitor = world.monitor()
        world.send(producer, quotes=redelivered_quotes, events=redelivered_bookings, raw=garbage)
        total_events = len(t.events) + len(redelivered_bookings) + 1
        wait_for(lambda: status(world)["counters"].get("quotes_logged", 0) == len(t.quotes)
                 and status(world)["counters"].get("records_bookings", 0) == total_events,
                 60, "every quote and booking read after the restart")  # fmt: skip
        # Event time moves on a day, on both topics: every window of the traffic closes.
        later = t.quotes[-1].quoted_at + timedelta(days=1)
        world.send(producer, quotes=[t.quotes[-1].model_copy(update={"request_id": "sentinel", "quoted_at": later})],
                   events=[t.events[-1].model_copy(update={"event_id": "sentinel", "event_time": later})])  # fmt: skip
        wait_for(lambda: status(world)["counters"].get("outcomes_logged", 0) >= len(t.quotes), 60,
                 "every window closed")  # fmt: skip
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(timeout=30) == 0, world.logs()
    finally:
        producer.close()
        for process in world.processes:
            if process.poll() is None:
                kill(process)
        world.remove_topics()

    quotes = read_quotes(world.settings)
    assert quotes["request_id"].is_unique
    assert set(quotes["request_id"]) == {q.request_id for q in t.quotes} | {"sentinel"}
    assert {"f_category", "f_bookings_7d", "f_brand_tier"} <= set(quotes.columns)
    assert quotes.loc[quotes["request_id"] != "sentinel", "feature_age_s"].between(1, 600).all()

    outcomes = read_outcomes(world.settings)
    assert outcomes["request_id"].is_unique and len(outcomes) == len(t.quotes)
    want = expected_outcomes(t.quotes, t.events + redelivered_bookings, WINDOW_S)
    got = outcomes.set_index("request_id")
    columns = ["booked", "booking_id", "paid_per_day", "cancelled", "booked_any", "paid_any_per_day",
               "bookings_in_window"]  # fmt: skip
    wrong = [(rid, {c: got.at[rid, c] for c in columns}, w) for rid, w in want.items()
             if {c: (None if _missing(got.at[rid, c]) else got.at[rid, c]) for c in columns} != w]  # fmt: skip
    assert not wrong, f"{len(wrong)} outcomes differ, e.g. {wrong[:3]}"
    assert not outcomes["late_quote"].any()
    booked = outcomes["booked"].sum()
    assert (
        0 < booked < len(outcomes)
        and outcomes["cancelled"].any()
        and (outcomes["booked_any"] & ~outcomes["booked"]).any()
    )

    rejected = read_rejected(world.settings)
    assert len(rejected) == len(garbage)
    assert sorted(rejected["reason"].str.split(":").str[0]) == ["not a booking event", "not a quote", "not a quote",
                                                                  "not a quote"]  # fmt: skip
    final = read_status(world.settings)
    assert final["join_counters"]["quotes_duplicate"] == len(redelivered_quotes)
    assert final["join_counters"]["bookings_duplicate"] == len(redelivered_bookings)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)
