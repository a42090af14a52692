"""A served Bento on a small trained world: real Redis (its own db), Kafka (its own topics),
MLflow (SQLite in the world's data dir) and `bentoml serve` as a subprocess on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from bento_service.protos import pricing_pb2_grpc
from rental.bench.serving_world import ServingWorld, build
from rental.services.topics import admin_client, ensure_topics
from rental.settings import REPO_ROOT, Settings
from tests.integration.conftest import local_services, settings  # noqa: F401  (the real services)

REDIS_DB = 13


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    process: subprocess.Popen
    http: str
    grpc_address: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text()


def serve(env: dict[str, str], log: Path, timeout_s: float = 180.0) -> Served:
    """`bentoml serve` as an operator runs it, waiting until /readyz says it can quote."""
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTAL_")} | env | {
        "RENTAL_SERVE_HTTP_PORT": str(http_port), "RENTAL_SERVE_GRPC_PORT": str(grpc_port),
        "RENTAL_SERVE_HOST": "127.0.0.1",
    }  # fmt: skip
    out = open(log, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", "bento_service.service:PricingService"],
        cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    served = Served(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"bentoml serve exited with {process.returncode}:\n{served.logs()[-4000:]}")
        try:
            if httpx.get(f"{served.http}/readyz", timeout=2).status_code == 200:
                return served
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(served)
    raise AssertionError(f"bentoml serve was not ready after {timeout_s:.0f} s:\n{served.logs()[-4000:]}")


def stop(served: Served) -> None:
    if served.process.poll() is None:
        os.killpg(served.process.pid, signal.SIGTERM)
        try:
            served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(served.process.pid, signal.SIGKILL)
            served.process.wait(timeout=10)


@pytest.fixture(scope="session")
def world(tmp_path_factory, settings: Settings) -> ServingWorld:  # noqa: F811
    run = uuid.uuid4().hex[:8]
    topics = {
        "RENTAL_TOPIC_PREDICTIONS": f"test.{run}.predictions",
        "RENTAL_TOPIC_BOOKINGS": f"test.{run}.bookings",
        "RENTAL_TOPIC_BOOKINGS_DLQ": f"test.{run}.bookings.dlq",
        "RENTAL_TOPIC_BOOKINGS_BY_CUSTOMER": f"test.{run}.by-customer",
        "RENTAL_TOPIC_BOOKINGS_BY_CATEGORY": f"test.{run}.by-category",
        "RENTAL_CONSUMER_GROUP_PREFIX": f"test-{run}",
        "RENTAL_KAFKA_PORT": str(settings.kafka_port),
    }
    built = build(tmp_path_factory.mktemp("serving-world"), settings, REDIS_DB, **topics)
    specs = built.settings.topic_specs()
    with admin_client(settings.bootstrap_servers) as admin:
        ensure_topics(admin, {name: (specs[name][0], 3600 * 1000) for name in specs})
    yield built
    with admin_client(settings.bootstrap_servers) as admin:
        admin.delete_topics(list(specs), raise_errors=False)


@pytest.fixture(scope="session")
def served(world: ServingWorld, tmp_path_factory) -> Served:
    bento = serve(world.env | {"RENTAL_SERVE_ALIAS_POLL_S": "0.5"}, tmp_path_factory.mktemp("bento") / "serve.log")
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
