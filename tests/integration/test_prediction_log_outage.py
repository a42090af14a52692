"""The prediction log tells the truth about Kafka: a broker of the test's own (the pinned jars,
its own directory and ports) is stopped while quotes keep coming; after
``serve_log_unreachable_s`` the log reports Kafka unreachable and counts the quotes waiting;
once the broker is back every quote is delivered and it is reachable again, nothing lost."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import pytest

from bento_service.prediction_log import PredictionLog
from rental.servers.kafka import KafkaServer, jars_fetched
from rental.settings import Settings
from tests.worlds.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
UNREACHABLE_S = 3.0


def _record(i: int) -> dict:
    return {"request_id": f"r{i}", "quoted_at": datetime.now(UTC), "protocol": "http", "item_id": f"item_{i % 7}",
            "customer_id": None, "rental_start": date(2026, 7, 1), "rental_days": 3, "features": {"bookings_7d": i},
            "price_per_day": 40.0, "total_price": 120.0, "currency": "GBP", "model_version": "7",
            "features_as_of": None, "degraded": False, "cold_start": False, "latency_ms": 1.0}  # fmt: skip


def _until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.1)


def test_kafka_gone_for_longer_than_the_setting_is_reported_and_nothing_is_lost(tmp_path):
    base = Settings()
    if not jars_fetched(base):
        pytest.skip("the Kafka jars are not installed (rental services install)")
    port, controller_port = free_ports(2)
    settings = Settings(data_dir=tmp_path, kafka_bootstrap_servers=None, kafka_port=port,
                        kafka_controller_port=controller_port, serve_log_unreachable_s=UNREACHABLE_S)  # fmt: skip
    broker = KafkaServer(settings)
    broker.start()  # with the project's topics, `predictions` among them
    log = PredictionLog(settings)
    log.start()
    try:
        for i in range(20):
            log.publish(_record(i))
        _until(lambda: log.logged == 20, 60, "the first quotes delivered")
        assert log.reachable and log.pending == 0

        broker.stop()
        for i in range(20, 50):
            log.publish(_record(i))
        time.sleep(1.0)
        assert log.reachable, "an outage shorter than the setting is not reported"
        _until(lambda: not log.reachable, UNREACHABLE_S + 10, "Kafka reported unreachable")
        assert log.pending == 30 and log.logged == 20  # waiting, counted, not lost

        broker.start()
        _until(lambda: log.logged == 50, 120, "the waiting quotes delivered once Kafka is back")
        assert log.reachable and log.pending == 0 and log.unlogged == 0
    finally:
        log.close(timeout_s=2)
        broker.stop()
