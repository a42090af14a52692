"""A served Bento on a small trained world: real Redis (its own db), Kafka (its own topics),
MLflow (SQLite in the world's data dir) and `bentoml serve` as a subprocess on free ports."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest

from bento_service.protos import pricing_pb2_grpc
from rental.servers.pricing import Served, start, stop
from rental.settings import Settings
from tests.integration.conftest import local_services, settings  # noqa: F401  (the real services)
from tests.worlds.serving_world import ServingWorld, build
from tests.worlds.world_kafka import world_topics

REDIS_DB = 13


@pytest.fixture(scope="session")
def world(tmp_path_factory, settings: Settings) -> ServingWorld:  # noqa: F811
    run = uuid.uuid4().hex[:8]
    topics = {
        "RENTAL_TOPIC_PREDICTIONS": f"test.{run}.predictions",
        "RENTAL_TOPIC_BOOKINGS": f"test.{run}.bookings",
        "RENTAL_TOPIC_BOOKINGS_DLQ": f"test.{run}.bookings.dlq",
        "RENTAL_TOPIC_BOOKINGS_BY_CUSTOMER": f"test.{run}.by-customer",
        "RENTAL_TOPIC_BOOKINGS_BY_CATEGORY": f"test.{run}.by-category",
        "RENTAL_TOPIC_ITEMS": f"test.{run}.items",  # never the shared catalogue
        "RENTAL_CONSUMER_GROUP_PREFIX": f"test-{run}",
        "RENTAL_KAFKA_PORT": str(settings.kafka_port),
    }
    built = build(tmp_path_factory.mktemp("serving-world"), settings, REDIS_DB, **topics)
    with world_topics(settings.bootstrap_servers, built.settings):
        yield built


@pytest.fixture(scope="session")
def served(world: ServingWorld, tmp_path_factory) -> Served:
    # One worker: the tests read per-process state (the alias a worker follows, its log counters).
    env = world.env | {"RENTAL_SERVE_ALIAS_POLL_S": "0.5", "RENTAL_SERVE_WORKERS": "1"}
    bento = start(env, tmp_path_factory.mktemp("bento") / "serve.log")
    yield bento
    stop(bento)


@pytest.fixture(scope="session")
def http(served: Served):
    with httpx.Client(base_url=served.http, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def stub(served: Served):
    with grpc.insecure_channel(served.grpc_address) as channel:
        yield pricing_pb2_grpc.PricingServiceStub(channel)
