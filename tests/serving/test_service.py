"""The served Bento over HTTP and gRPC: same price on both, bad input, cold start, the prediction
log, the alias moving without a restart, and a streamed booking reaching the next quote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import grpc
import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition
from mlflow import MlflowClient

from bento_service.protos import pricing_pb2, pricing_pb2_grpc
from rental.connections import kafka_options
from tests.worlds.serving_world import NEW_ITEM
from tests.worlds.stream_world import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
START = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()


def body(item: str, customer: str | None = None, start: str = START, days: int = 3) -> dict:
    return {"item_id": item, "rental_start": start, "rental_days": days} | (
        {"customer_id": customer} if customer else {}
    )


def test_the_same_request_gets_the_same_price_over_http_and_grpc(world, http, stub):
    cases = [body(world.items[0], world.customers[0]), body(world.items[5]), body(world.items[-1], days=9),
             body(NEW_ITEM, world.customers[1], days=1)]  # fmt: skip
    for case in cases:
        answer = http.post("/predict", json=case)
        assert answer.status_code == 200, answer.text
        quote = answer.json()
        over_grpc = stub.Predict(pricing_pb2.PredictRequest(**case))
        assert over_grpc.price_per_day == quote["price_per_day"] > 0
        assert over_grpc.total_price == quote["total_price"] == round(quote["price_per_day"] * case["rental_days"], 2)
        assert over_grpc.model_version == quote["model_version"] == world.champion
        assert over_grpc.cold_start == quote["cold_start"] and quote["currency"] == "GBP"
        assert quote["features_as_of"] and over_grpc.features_as_of == quote["features_as_of"].replace("Z", "+00:00")
    batch = http.post("/predict_batch", json={"items": [*cases, body("no_such_item")]})
    assert batch.status_code == 200, batch.text
    assert batch.json()["not_found"] == ["no_such_item"]
    prices = [q["price_per_day"] for q in batch.json()["quotes"]]
    over_grpc = stub.PredictBatch(
        pricing_pb2.PredictBatchRequest(items=[pricing_pb2.PredictRequest(**c) for c in cases])
    )
    assert [q.price_per_day for q in over_grpc.quotes] == prices
    assert prices == [http.post("/predict", json=c).json()["price_per_day"] for c in cases]


def test_concurrent_requests_are_priced_together_and_each_as_if_alone(world, served, http):
    """Requests arriving together share one feature read and model call (the batcher), over
    both protocols at once, and each still gets exactly the price it gets alone."""
    cases = [body(world.items[k % 20], world.customers[k % 7], days=1 + k % 9) for k in range(24)]
    alone = [http.post("/predict", json=c).json()["price_per_day"] for c in cases]
    before = http.get("/health").json()
    barrier = threading.Barrier(len(cases))

    def ask(k: int) -> float:
        if k % 2:
            with grpc.insecure_channel(served.grpc_address) as channel:
                stub = pricing_pb2_grpc.PricingServiceStub(channel)
                grpc.channel_ready_future(channel).result(timeout=10)
                barrier.wait()
                return stub.Predict(pricing_pb2.PredictRequest(**cases[k])).price_per_day
        with httpx.Client(base_url=served.http, timeout=10) as client:
            client.get("/livez")  # connected before the barrier
            barrier.wait()
            return client.post("/predict", json=cases[k]).json()["price_per_day"]

    together = []
    for _ in range(3):
        with ThreadPoolExecutor(len(cases)) as pool:
            together.append(list(pool.map(ask, range(len(cases)))))
    assert all(prices == alone for prices in together)
    after = http.get("/health").json()
    requests = after["requests_priced"] - before["requests_priced"]
    calls = after["pricing_calls"] - before["pricing_calls"]
    assert requests >= 3 * len(cases) and calls < requests  # some requests shared a call


def test_a_new_item_is_priced_from_its_attributes_and_flagged(world, http):
    quote = http.post("/predict", json=body(NEW_ITEM)).json()
    assert quote["cold_start"] is True and quote["price_per_day"] > 0 and quote["degraded"] is False
    assert http.post("/predict", json=body(world.items[0])).json()["cold_start"] is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rental_days": 0}, "rental_days"),
        ({"rental_days": "three"}, "rental_days"),
        ({"rental_days": None}, "rental_days"),
        ({"rental_start": "2026-02-30"}, "rental_start"),
        ({"rental_start": "2001-01-01"}, "rental_start"),
        ({"item_id": ""}, "item_id"),
        ({"item_id": None}, "item_id"),
        ({"customer_id": "a b"}, "customer_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_field_is_a_400_and_invalid_argument_naming_it(world, http, stub, change, field):
    request = body(world.items[0]) | change
    answer = http.post("/predict", json={k: v for k, v in request.items() if v is not None})
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["fields"] and field in answer.json()["error"]
    proto_fields = {k: v for k, v in request.items() if k in pricing_pb2.PredictRequest.DESCRIPTOR.fields_by_name}
    try:
        message = pricing_pb2.PredictRequest(**{k: v for k, v in proto_fields.items() if v is not None})
    except (TypeError, ValueError):
        return  # a wrong type cannot even be put in a typed gRPC message
    if field == "colour":
        return  # nor can an unknown field
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(message)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.value.details()


def test_unknown_items_missing_bodies_and_big_batches_are_4xx(world, http, stub):
    answer = http.post("/predict", json=body("no_such_item"))
    assert answer.status_code == 404 and answer.json()["fields"] == ["item_id"]
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(pricing_pb2.PredictRequest(**body("no_such_item")))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert http.post("/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    missing = http.post("/predict", json={"item_id": world.items[0]})
    assert missing.status_code == 400 and {"rental_start", "rental_days"} <= set(missing.json()["fields"])
    limit = world.settings.serve_batch_limit
    big = http.post("/predict_batch", json={"items": [body(world.items[0])] * (limit + 1)})
    assert big.status_code == 400 and big.json()["fields"] == ["items"]
    with pytest.raises(grpc.RpcError) as error:
        stub.PredictBatch(pricing_pb2.PredictBatchRequest(items=[pricing_pb2.PredictRequest(**body(world.items[0]))] * (limit + 1)))  # fmt: skip
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "items" in error.value.details()
    assert http.post("/predict_batch", json={"items": [body(world.items[0])] * limit}).status_code == 200


def test_health_and_readiness(http):
    assert http.get("/readyz").status_code == 200 and http.get("/livez").status_code == 200
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["redis"] and health["kafka"] and health["model_version"]
    paths = http.get("/docs.json").json()["paths"]
    assert {"/predict", "/predict_batch", "/health", "/readyz", "/livez"} <= set(paths)


def _records(world, request_ids: set[str], timeout_s: float = 30.0) -> dict[str, dict]:
    """The records of these quotes on the world's predictions topic."""
    topic = world.settings.topic_predictions
    consumer = KafkaConsumer(**kafka_options(world.settings), enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in range(world.settings.predictions_partitions)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while set(found) != request_ids and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    value = json.loads(record.value)
                    if value["request_id"] in request_ids:
                        assert record.key.decode() == value["item_id"]
                        found[value["request_id"]] = value
    finally:
        consumer.close()
    return found


def test_every_quote_is_on_the_predictions_topic(world, http, stub):
    ids: dict[str, float] = {}
    for item in world.items[:5]:
        quote = http.post("/predict", json=body(item, world.customers[2])).json()
        ids[quote["request_id"]] = quote["price_per_day"]
        over_grpc = stub.Predict(pricing_pb2.PredictRequest(**body(item)))
        ids[over_grpc.request_id] = over_grpc.price_per_day
    batch = http.post("/predict_batch", json={"items": [body(i) for i in world.items[5:8]]}).json()
    ids |= {q["request_id"]: q["price_per_day"] for q in batch["quotes"]}
    records = _records(world, set(ids))
    assert set(records) == set(ids)
    for request_id, record in records.items():
        assert record["price_per_day"] == ids[request_id] and record["schema_version"] == 1
        assert record["model_version"] == world.champion and record["latency_ms"] > 0
        assert record["features"]["retail_price"] > 0 and "bookings_30d" in record["features"]
    assert {r["protocol"] for r in records.values()} == {"http", "grpc"}
    assert http.get("/health").json()["predictions_unlogged"] == 0


def test_moving_the_alias_is_served_without_a_restart(world, served, http):
    client = MlflowClient(world.settings.mlflow_tracking_uri)
    name, alias = world.settings.registered_model_name, world.settings.serving_alias
    pid = served.process.pid
    request = body(world.items[1], world.customers[0])
    before = http.post("/predict", json=request).json()
    try:
        client.set_registered_model_alias(name, alias, world.other)
        moved = wait_for(lambda: (q := http.post("/predict", json=request).json())["model_version"] == world.other
                         and q, 30, "the service to serve the other version")  # fmt: skip
        assert moved["price_per_day"] != before["price_per_day"]  # a different model (depth 3, 40 rounds)
    finally:
        client.set_registered_model_alias(name, alias, world.champion)
    back = wait_for(lambda: (q := http.post("/predict", json=request).json())["model_version"] == world.champion
                    and q, 30, "the champion again")  # fmt: skip
    assert back["price_per_day"] == before["price_per_day"] and served.process.pid == pid
    assert served.process.poll() is None


def test_a_streamed_booking_reaches_the_next_quote(world, http):
    """Bookings of one item, through Kafka and the live feature consumer, move its next quote."""
    from tests.worlds.world_kafka import send_bookings

    item = world.items[len(world.items) // 2]
    request = body(item, world.customers[3])
    before = http.post("/predict", json=request).json()
    consumer = _consumer(world)
    try:
        send_bookings(world.settings, item, world.customers[4], date.fromisoformat(START), tag="serve")
        after = wait_for(lambda: (q := http.post("/predict", json=request).json())["features_as_of"]
                         > before["features_as_of"] and q, 90, "the booking's features in the quote")  # fmt: skip
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
    records = _records(world, {before["request_id"], after["request_id"]})
    old, new = records[before["request_id"]]["features"], records[after["request_id"]]["features"]
    assert new["bookings_7d"] >= old["bookings_7d"] + 1 and new["last_booking_at"] > old["last_booking_at"]
    assert after["price_per_day"] != before["price_per_day"]


def _consumer(world) -> subprocess.Popen:
    """`rental stream features` on the world's topics, as an operator runs it."""
    log = open(world.settings.data_dir / "consumer.log", "w")  # noqa: SIM115
    env = {**os.environ, **world.env, "RENTAL_CHECKPOINT_EVERY_S": "2"}
    return subprocess.Popen([sys.executable, "-m", "rental.cli", "stream", "features", "--quiet"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
