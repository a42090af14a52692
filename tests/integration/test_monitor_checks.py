"""Checks, alerting and retrain requests over a prediction log, on the real Kafka broker, a
real MLflow registry (the champion and its logged reference) and a local webhook receiver.

One world (``tests/worlds/monitor_world.py``) is shared: a champion trained on an unshifted
platform, and the log it would have made with no shift and with each of the simulator's
shifts. Windows are a week of event time; a request is due within ``DETECT_WITHIN`` windows
of a shift's start (measured: the second shifted window, for each of the three).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from kafka import KafkaConsumer, KafkaProducer

from monitoring.alerts.policy import PolicyState, state_path
from monitoring.checks.dead_letters import dlq_rate
from monitoring.checks.run import run_checks
from monitoring.checks.windows import Window
from rental.connections import kafka_options
from tests.worlds import monitor_world as mw

DETECT_WITHIN = 3  # windows from a shift's start to its request, the start's window counted
UNSHIFTED_CHECKED = 12  # weeks of the unshifted log checked here (the benchmark checks all 20)


class Receiver:
    """A local HTTP endpoint that keeps what is POSTed; ``failing`` makes it answer 503."""

    def __init__(self):
        self.posts: list[tuple[dict, str]] = []
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing:
                    self.send_response(503)
                else:
                    receiver.posts.append((json.loads(body), self.headers["Idempotency-Key"]))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/retrain"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def world(tmp_path_factory, settings) -> mw.MonitorWorld:
    return mw.build(tmp_path_factory.mktemp("monitor-world"), settings)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def requests_on(settings, topic: str) -> list[dict]:
    consumer = KafkaConsumer(topic, **kafka_options(settings), auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=3_000)  # fmt: skip
    try:
        return [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()


def scenario(world, name, tmp_path, topic, url, first: datetime, until: datetime | None = None):
    s = world.scenario_settings(name, tmp_path / name, topic_retrain_requests=topic, monitor_webhook_url=url)
    quotes, outcomes = world.quotes[name], world.outcomes[name]
    keep_q, keep_o = quotes["quoted_at"] >= pd.Timestamp(first), outcomes["quoted_at"] >= pd.Timestamp(first)
    if until is not None:
        keep_q &= quotes["quoted_at"] < pd.Timestamp(until)
        keep_o &= outcomes["quoted_at"] < pd.Timestamp(until)
    mw.write_log(s, quotes[keep_q], outcomes[keep_o])
    return s


def test_no_shift_many_windows_no_request(world, tmp_path, fresh_topic, receiver):
    topic = fresh_topic(1)
    until = mw.T0 + UNSHIFTED_CHECKED * mw.WINDOW
    s = scenario(world, "none", tmp_path, topic, receiver.url, mw.T0, until + timedelta(days=1))  # closes the last
    done = run_checks(s, dlq=False)
    assert len(done.results) == UNSHIFTED_CHECKED
    assert all(r.status == "ok" for r in done.results), [
        (r.window.key, [c.name for c in r.failed]) for r in done.results
    ]
    assert all(r.reference == "mlflow" for r in done.results)  # the champion's logged reference
    assert done.requests == [] and requests_on(s, topic) == [] and receiver.posts == []
    # the watch checks ran and are shown: drift against the reference, per category too
    assert done.results[-1].figures["drift_share"] is not None
    assert done.results[-1].figures["prediction_drift_by_category"]


@pytest.mark.parametrize(
    ("name", "reason", "category"),
    [("inflation", "price_bias", None), ("trend", "price_bias_by_category", mw.TREND_CATEGORY),
     ("off_season", "price_bias_by_category", mw.OFF_SEASON_CATEGORY)],
)  # fmt: skip
def test_each_shift_raises_one_request_in_time(world, tmp_path, fresh_topic, receiver, name, reason, category):
    topic = fresh_topic(1)
    until = mw.SHIFT_START + DETECT_WITHIN * mw.WINDOW + timedelta(days=1)  # the day after closes the last
    s = scenario(world, name, tmp_path, topic, receiver.url, mw.SHIFT_START - mw.WINDOW, until)
    done = run_checks(s, dlq=False)
    assert done.problems == []
    on_topic = requests_on(s, topic)
    assert len(on_topic) == 1 and on_topic == done.requests
    request = on_topic[0]
    last = datetime.fromisoformat(request["windows"][-1]["window_end"])
    detection_windows = round((last - mw.SHIFT_START) / mw.WINDOW)
    assert 1 <= detection_windows <= DETECT_WITHIN
    assert datetime.fromisoformat(request["windows"][0]["window_start"]) >= mw.SHIFT_START  # nothing before the shift
    assert request["champion_version"] == world.version and reason in request["reasons"]
    if category:
        assert category in request["windows"][-1]["figures"]["categories_mispriced"]
    assert [(body, key) for body, key in receiver.posts] == [(request, request["idempotency_key"])]
    report = request["windows"][-1]["report"]
    assert all((s.monitor_dir / report).joinpath(f).exists() for f in ("quality.html", "drift.html", "window.json"))


def test_a_restart_sends_nothing_twice_and_delivers_what_failed(world, tmp_path, fresh_topic, receiver):
    topic = fresh_topic(1)
    receiver.failing = True  # the people's webhook is down when the alarm is raised
    s = scenario(world, "inflation", tmp_path, topic, receiver.url, mw.SHIFT_START - mw.WINDOW,
                 mw.SHIFT_START + 2 * mw.WINDOW + timedelta(days=1))  # fmt: skip
    first = run_checks(s, dlq=False)
    assert len(first.requests) == 1 and any("webhook" in p for p in first.problems)
    assert len(requests_on(s, topic)) == 1 and receiver.posts == []
    assert len(PolicyState.load(state_path(s)).outbox) == 1  # kept for the next run

    receiver.failing = False
    again = run_checks(s, dlq=False)  # a restart: no new window, the outbox delivered
    assert again.requests == [] and again.results == [] and again.problems == []
    assert len(requests_on(s, topic)) == 1  # Kafka had it already: not sent twice
    assert [key for _, key in receiver.posts] == [first.requests[0]["idempotency_key"]]
    state = PolicyState.load(state_path(s))
    assert state.outbox == [] and state.sent == [first.requests[0]["idempotency_key"]]

    # the log goes on: later failing windows are in the cool-down, so no second request
    mw.write_log(
        s.model_copy(update={}),
        *[
            f[(f["quoted_at"] >= pd.Timestamp(mw.SHIFT_START + 2 * mw.WINDOW + timedelta(days=1)))]
            for f in (world.quotes["inflation"], world.outcomes["inflation"])
        ],
    )
    later = run_checks(s, dlq=False)
    assert later.results and later.requests == [] and len(requests_on(s, topic)) == 1


def test_status_metrics_and_workspace(world, tmp_path, fresh_topic):
    from typer.testing import CliRunner

    from monitoring.checks.commands import _registry, _write_metrics
    from monitoring.views.store import latest_windows
    from rental.cli import app
    from rental.settings import get_settings

    topic = fresh_topic(1)
    s = scenario(
        world,
        "trend",
        tmp_path,
        topic,
        None,
        mw.SHIFT_START - mw.WINDOW,
        mw.SHIFT_START + 2 * mw.WINDOW + timedelta(days=1),
    )  # the day after closes the last window
    run_checks(s, dlq=False)
    windows = latest_windows(s)
    assert [w["status"] for w in windows] == ["ok", "failing", "failing"]
    _write_metrics(s)
    text = (s.monitor_dir / "metrics.prom").read_text()
    assert f'rental_monitor_price_bias{{model_version="{world.version}"}}' in text
    assert "rental_monitor_drift_share" in text and "rental_monitor_window_failing" in text
    assert "rental_monitor_retrain_requests_sent 1.0" in text
    assert list(_registry(s).collect())
    projects = list((s.monitor_dir / "workspace").glob("*/snapshots/*.json"))
    assert len(projects) >= 3 * 2  # each judged window's reports, over time in the UI
    get_settings.cache_clear()  # the command reads its settings from this environment
    try:
        result = CliRunner().invoke(
            app, ["monitor", "status"], env={"RENTAL_MONITOR_DIR": str(s.monitor_dir), "COLUMNS": "200"}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "failing" in result.output and "price_bias" in result.output


def test_dead_letter_rate_from_the_topics_offsets(settings, fresh_topic):
    bookings, letters = fresh_topic(2), fresh_topic(1)
    s = settings.model_copy(update={"topic_bookings": bookings, "topic_bookings_dlq": letters})
    producer = KafkaProducer(**kafka_options(settings))
    now = datetime.now(UTC)
    stamp = int(now.timestamp() * 1000)
    for k in range(99):
        producer.send(bookings, key=str(k).encode(), value=b"{}", timestamp_ms=stamp)
    producer.send(letters, value=b"{}", timestamp_ms=stamp)
    producer.send(bookings, value=b"{}", timestamp_ms=stamp + 3_600_000)  # after the window: not counted
    producer.flush()
    producer.close()
    window = Window(now - timedelta(minutes=5), now + timedelta(minutes=5))
    assert dlq_rate(s, window) == pytest.approx(1 / 100)
    assert dlq_rate(s, Window(now - timedelta(hours=3), now - timedelta(hours=2))) is None  # nothing then


def test_a_champion_without_a_logged_reference_is_checked_against_its_first_windows(world, tmp_path, fresh_topic):
    topic = fresh_topic(1)
    quotes, outcomes = (f.assign(model_version="unregistered") for f in (world.quotes["none"], world.outcomes["none"]))
    s = world.scenario_settings("none", tmp_path / "fallback", topic_retrain_requests=topic)
    until = pd.Timestamp(mw.T0 + 5 * mw.WINDOW + timedelta(days=1))
    mw.write_log(s, quotes[quotes["quoted_at"] < until], outcomes[outcomes["quoted_at"] < until])
    done = run_checks(s, dlq=False)
    fallback = s.monitor_fallback_windows
    assert [r.status for r in done.results] == ["learning"] * fallback + ["ok"] * (5 - fallback)
    assert [r.reference for r in done.results] == ["none yet"] * fallback + ["first windows"] * (5 - fallback)
    assert (s.monitor_dir / "references" / "unregistered" / "reference.parquet").exists()
    judged = done.results[-1]
    assert {c.name for c in judged.checks} >= {"price_bias", "booking_rate", "feature_drift"}
    assert all(c.passed is not False for c in judged.checks if c.alarm) and done.requests == []


def test_checks_read_the_log_the_monitor_writes(world, tmp_path, fresh_topic):
    """End to end from the topics: quotes as the service publishes them and bookings as the app
    does, logged by `rental monitor run`'s consumer, then checked."""
    from bento_service.schemas import PredictionRecord
    from monitoring.log.consumer import Monitor
    from streaming.events import BookingCreated

    predictions, bookings, requests = fresh_topic(2), fresh_topic(2), fresh_topic(1)
    s = world.scenario_settings("none", tmp_path / "e2e", topic_predictions=predictions, topic_bookings=bookings,
                                topic_retrain_requests=requests, monitor_idle_s=1.0)  # fmt: skip
    end = mw.T0 + 3 * mw.WINDOW
    quotes, outcomes = world.quotes["none"], world.outcomes["none"]
    quotes, outcomes = (
        quotes[quotes["quoted_at"] < pd.Timestamp(end)],
        outcomes[outcomes["quoted_at"] < pd.Timestamp(end)],
    )
    features = [c for c in quotes.columns if c.startswith("f_")]
    producer = KafkaProducer(**kafka_options(s), linger_ms=20)
    for q, paid, booking in zip(
        quotes.to_dict("records"), outcomes["paid_per_day"], outcomes["booking_id"], strict=True
    ):
        record = PredictionRecord(
            request_id=q["request_id"], quoted_at=q["quoted_at"], protocol="http", item_id=q["item_id"],
            customer_id=q["customer_id"], rental_start=q["rental_start"], rental_days=q["rental_days"],
            features={c[2:]: (None if pd.isna(q[c]) else q[c]) for c in features}, price_per_day=q["price_per_day"],
            total_price=q["total_price"], currency="GBP", model_version=q["model_version"],
            features_as_of=q["features_as_of"], degraded=False, cold_start=bool(q["cold_start"]), latency_ms=2.0,
        )  # fmt: skip
        producer.send(predictions, key=q["item_id"].encode(), value=record.model_dump_json().encode())
        booked = BookingCreated(
            event_id=f"e-{booking}", item_id=q["item_id"], customer_id=q["customer_id"], booking_id=booking,
            event_time=q["quoted_at"] + timedelta(minutes=1), rental_start=q["rental_start"],
            rental_days=q["rental_days"], price_per_day=paid,
        )  # fmt: skip
        producer.send(bookings, key=q["item_id"].encode(), value=booked.model_dump_json().encode())
    # a booking a week later moves the watermark past the last window, so all three close
    later = BookingCreated(
        event_id="e-later",
        item_id="item_x",
        customer_id="cust_x",
        booking_id="bk_later",
        event_time=end + mw.WINDOW,
        rental_start=(end + mw.WINDOW).date(),
        rental_days=2,
        price_per_day=10.0,
    )
    producer.send(bookings, key=b"item_x", value=later.model_dump_json().encode())
    producer.flush()
    producer.close()

    Monitor(s).run(max_seconds=120, until_idle=3)
    done = run_checks(s, dlq=False)
    assert [r.window.start for r in done.results] == [mw.T0 + k * mw.WINDOW for k in range(3)]
    for r in done.results:
        assert r.status == "ok" and r.reference == "mlflow", [c.name for c in r.failed]
        assert r.booked == r.quotes > s.monitor_min_rows  # every quote here was booked by its customer
        assert r.figures["booking_rate"] == 1.0 and r.figures["feature_age_p95_s"] < 60
    assert requests_on(s, requests) == []
