"""The project's images, run as an operator runs them: `rental-pricing:latest` (`bentoml
containerize`) quotes over HTTP and gRPC what the service in this process quotes, and
`rental-app:latest` runs the CLI and the live feature consumer, whose booking moves the pricing
image's next quote.

Both run with host networking against the local Kafka (topics of this run) and a Redis of the
test's own (a redis-server on a free port); the world (history, Feast registry, MLflow registry
with a champion) is built in a temporary data dir mounted at the same path in the containers.
"""

from __future__ import annotations

import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from bento_service.protos import pricing_pb2, pricing_pb2_grpc
from rental.servers.redis import RedisServer, binary
from rental.settings import Settings
from tests.integration.conftest import local_services, settings  # noqa: F401  (the real services)
from tests.worlds.ports import free_ports
from tests.worlds.serving_world import NEW_ITEM, ServingWorld, build
from tests.worlds.stream_world import wait_for
from tests.worlds.world_kafka import send_bookings, world_topics

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.timeout(3600)]

RUN = uuid.uuid4().hex[:8]
START = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory) -> Iterator[str]:
    """A redis-server of this module's own, started and stopped by the project's lifecycle."""
    if binary() is None:
        pytest.skip("redis-server is not installed (rental services install)")
    server = RedisServer(Settings(data_dir=tmp_path_factory.mktemp("redis"), redis_port=free_ports(1)[0],
                                  REDIS_URL=None))  # fmt: skip
    server.start()
    yield server.s.redis_url
    server.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory, settings: Settings, own_redis: str, images) -> Iterator[ServingWorld]:  # noqa: F811
    topics = {
        "RENTAL_TOPIC_PREDICTIONS": f"test.{RUN}.predictions",
        "RENTAL_TOPIC_BOOKINGS": f"test.{RUN}.bookings",
        "RENTAL_TOPIC_BOOKINGS_DLQ": f"test.{RUN}.bookings.dlq",
        "RENTAL_TOPIC_BOOKINGS_BY_CUSTOMER": f"test.{RUN}.by-customer",
        "RENTAL_TOPIC_BOOKINGS_BY_CATEGORY": f"test.{RUN}.by-category",
        "RENTAL_TOPIC_ITEMS": f"test.{RUN}.items",
        "RENTAL_CONSUMER_GROUP_PREFIX": f"test-{RUN}",
        "RENTAL_KAFKA_PORT": str(settings.kafka_port),
    }
    base = settings.model_copy(update={"redis_url_env": own_redis})
    built = build(tmp_path_factory.mktemp("container-world"), base, 0, **topics)
    # The images run as their own users (bentoml, rental): they read the registries and write the
    # offline store here.
    subprocess.run(["chmod", "-R", "a+rwX", str(built.settings.data_dir)], check=True)
    with world_topics(settings.bootstrap_servers, built.settings):
        yield built


def docker_run(image: str, name: str, world: ServingWorld, *args: str, env: dict[str, str] | None = None,
               detach: bool = False) -> list[str]:  # fmt: skip
    """`docker run` on the host's network with the world's settings and data dir."""
    data = str(world.settings.data_dir)
    command = ["docker", "run", "--name", name, "--network", "host", "--volume", f"{data}:{data}"]
    for key, value in (world.env | (env or {})).items():
        command += ["--env", f"{key}={value}"]
    return [*command, *(["--detach"] if detach else []), image, *args]


def logs(name: str) -> str:
    found = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False)
    return (found.stdout + found.stderr)[-4000:]


def remove(name: str) -> None:
    subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


@dataclass
class Pricing:
    http: httpx.Client
    grpc: pricing_pb2_grpc.PricingServiceStub
    metadata: tuple[tuple[str, str], ...]
    base_url: str


@pytest.fixture(scope="module")
def pricing(world: ServingWorld) -> Iterator[Pricing]:
    """rental-pricing:latest with the image's own binding (0.0.0.0, so API tokens are required)."""
    name, token = f"rental-pricing-test-{RUN}", secrets.token_hex(16)
    http_port, grpc_port = free_ports(2)
    env = {"RENTAL_SERVE_HTTP_PORT": str(http_port), "RENTAL_SERVE_GRPC_PORT": str(grpc_port),
           "RENTAL_SERVE_API_TOKENS": token, "RENTAL_SERVE_WORKERS": "1", "RENTAL_SERVE_ALIAS_POLL_S": "1"}  # fmt: skip
    remove(name)
    subprocess.run(docker_run("rental-pricing:latest", name, world, env=env, detach=True), check=True,
                   capture_output=True)  # fmt: skip
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        with httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=10) as http:
            deadline = time.monotonic() + 240
            while not _ready(http):
                running = subprocess.run(["docker", "inspect", "--format", "{{.State.Running}}", name],
                                         capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
                assert running == "true", f"the pricing container exited:\n{logs(name)}"
                assert time.monotonic() < deadline, f"the pricing container was not ready:\n{logs(name)}"
                time.sleep(1)
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                yield Pricing(http, pricing_pb2_grpc.PricingServiceStub(channel), (("authorization", f"Bearer {token}"),),
                              base_url)  # fmt: skip
    finally:
        remove(name)


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def body(item: str, customer: str | None = None, days: int = 3) -> dict:
    return {"item_id": item, "rental_start": START, "rental_days": days} | (
        {"customer_id": customer} if customer else {}
    )


def test_the_pricing_image_quotes_over_http_and_grpc_what_the_service_in_process_quotes(world, pricing):
    from bento_service.pricing import Pricer, QuoteInput

    assert pricing.http.get("/readyz").status_code == 200
    assert httpx.post(f"{pricing.base_url}/predict", json=body(world.items[0])).status_code == 401  # no token
    cases = [body(world.items[0], world.customers[0]), body(world.items[7]), body(world.items[-1], days=9),
             body(NEW_ITEM, world.customers[1], days=1)]  # fmt: skip
    local = Pricer(world.settings)
    local.start()
    try:
        expected = [
            local.quote([QuoteInput(c["item_id"], c.get("customer_id"), date.fromisoformat(START), c["rental_days"])],
                        "http").quotes[0]
            for c in cases
        ]  # fmt: skip
    finally:
        local.close()
    for case, want in zip(cases, expected, strict=True):
        answer = pricing.http.post("/predict", json=case)
        assert answer.status_code == 200, answer.text
        quote = answer.json()
        over_grpc = pricing.grpc.Predict(pricing_pb2.PredictRequest(**case), metadata=pricing.metadata, timeout=10)
        assert quote["model_version"] == over_grpc.model_version == want["model_version"] == world.champion
        assert quote["price_per_day"] == over_grpc.price_per_day == want["price_per_day"] > 0
        assert quote["total_price"] == over_grpc.total_price == want["total_price"]
        assert quote["cold_start"] == over_grpc.cold_start == want["cold_start"] == (case["item_id"] == NEW_ITEM)


def test_the_app_image_runs_the_cli_and_the_servers_it_carries(images):
    helped = subprocess.run(["docker", "run", "--rm", "rental-app:latest", "--help"], capture_output=True, text=True,
                            timeout=300, check=False)  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    assert all(command in helped.stdout for command in ("stream", "monitor", "simulate", "flows"))
    for server in ("mlflow", "prefect"):
        version = subprocess.run(["docker", "run", "--rm", "--entrypoint", server, "rental-app:latest", "--version"],
                                 capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert version.returncode == 0 and version.stdout.strip(), f"{server}: {version.stderr[-2000:]}"


def test_a_booking_through_the_app_images_consumer_moves_the_pricing_images_next_quote(world, pricing):
    item = world.items[len(world.items) // 2]
    request = body(item, world.customers[3])
    before = pricing.http.post("/predict", json=request).json()
    offline_before = set(Path(world.settings.data_dir).rglob("*.parquet"))
    name = f"rental-app-consumer-test-{RUN}"
    remove(name)
    consumer = subprocess.Popen(
        docker_run("rental-app:latest", name, world, "stream", "features", "--quiet",
                   env={"RENTAL_CHECKPOINT_EVERY_S": "2"}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        send_bookings(world.settings, item, world.customers[4], date.fromisoformat(START), tag="deploy")

        def moved() -> dict | None:
            assert consumer.poll() is None, f"the consumer exited:\n{logs(name)}"
            quote = pricing.http.post("/predict", json=request).json()
            return quote if quote["features_as_of"] > before["features_as_of"] else None

        after = wait_for(moved, 180, "the booking's features in the quote")
        assert after["price_per_day"] != before["price_per_day"]
        stopped = subprocess.run(["docker", "stop", "--time", "30", name], capture_output=True, check=False)
        assert stopped.returncode == 0 and consumer.wait(timeout=60) == 0, logs(name)  # SIGTERM: checkpoint, exit 0
        written = set(Path(world.settings.data_dir).rglob("*.parquet")) - offline_before
        assert written, "the consumer wrote nothing to the offline store"
    finally:
        if consumer.poll() is None:
            consumer.kill()
        print(logs(name)[-2000:])
        remove(name)
