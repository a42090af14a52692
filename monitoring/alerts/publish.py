"""Delivering a retrain request: the ``retrain-requests`` topic and the people's webhook.

Both get the same JSON. The topic's record is keyed by the idempotency key and waits for the
broker's acknowledgement (acks=all); the webhook gets a POST with an ``Idempotency-Key``
header and must answer 2xx. What fails stays in the policy's outbox and is retried by the next
run of the checks; what succeeded is not sent again.
"""

from __future__ import annotations

import json
import logging

import httpx
from kafka.errors import KafkaError

from monitoring.alerts.policy import PolicyState
from rental.settings import Settings

log = logging.getLogger(__name__)
SENT_KEYS_KEPT = 1_000


def encode(request: dict) -> bytes:
    return json.dumps(request, sort_keys=True, default=str).encode()


def send_to_kafka(settings: Settings, request: dict, producer=None) -> None:
    from streaming.producer import make_producer

    own = producer is None
    producer = producer or make_producer(settings, client_id="rental-monitor-alerts")
    try:
        future = producer.send(settings.topic_retrain_requests, key=request["idempotency_key"], value=encode(request))
        future.get(timeout=settings.stream_kafka_timeout_s)
    finally:
        if own:
            producer.close(timeout=5)


def post_webhook(settings: Settings, request: dict) -> None:
    response = httpx.post(
        settings.monitor_webhook_url, content=encode(request), timeout=settings.monitor_webhook_timeout_s,
        headers={"Content-Type": "application/json", "Idempotency-Key": request["idempotency_key"]},
    )  # fmt: skip
    response.raise_for_status()


def deliver(settings: Settings, state: PolicyState) -> list[str]:
    """Send what the outbox holds; returns the problems (empty: everything delivered)."""
    problems = []
    for entry in list(state.outbox):
        request = entry["request"]
        key = request["idempotency_key"]
        if not entry["kafka"]:
            try:
                send_to_kafka(settings, request)
                entry["kafka"] = True
            except (KafkaError, OSError) as exc:
                problems.append(f"retrain request {key} not on {settings.topic_retrain_requests}: {exc}")
        if not entry["webhook"] and settings.monitor_webhook_url:
            try:
                post_webhook(settings, request)
                entry["webhook"] = True
            except httpx.HTTPError as exc:
                problems.append(f"retrain request {key} not posted to the webhook: {exc}")
        if entry["kafka"] and (entry["webhook"] or not settings.monitor_webhook_url):
            state.outbox.remove(entry)
            state.sent = [*state.sent, key][-SENT_KEYS_KEPT:]
    for problem in problems:
        log.warning(problem)
    return problems
