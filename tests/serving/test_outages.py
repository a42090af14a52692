"""A Bento whose Redis goes away and comes back, and whose Kafka is down throughout.

The shared Redis must never stop, so this Bento reads a private redis-server (started here,
loaded with a copy of the world's keys) that the test kills and restarts; its Kafka address
names a port nobody listens on.
"""

from __future__ import annotations

import os
import signal
import subprocess

import grpc
import httpx
import pytest
import redis as redis_py

from bento_service.protos import pricing_pb2, pricing_pb2_grpc
from rental.servers.pricing import free_port, start, stop
from rental.servers.redis import binary
from tests.serving.test_service import body
from tests.worlds.stream_world import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


class PrivateRedis:
    def __init__(self, source: str, workdir):
        self.source, self.workdir, self.port, self.process = source, workdir, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """A fresh server holding a copy of the world's keys."""
        command = [binary(None) or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.workdir)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        target = redis_py.Redis.from_url(self.url)
        wait_for(lambda: _pings(target), 20, "the private redis-server")
        source = redis_py.Redis.from_url(self.source)
        for key in source.scan_iter(count=1000):
            target.restore(key, 0, source.dump(key), replace=True)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis_py.ConnectionError:
        return False


@pytest.fixture(scope="module")
def outage(world, tmp_path_factory):
    private = PrivateRedis(world.settings.redis_url, tmp_path_factory.mktemp("private-redis"))
    private.start()
    env = world.env | {"REDIS_URL": private.url, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                       "RENTAL_SERVE_LOG_QUEUE": "3", "RENTAL_SERVE_WORKERS": "1"}  # fmt: skip
    bento = start(env, tmp_path_factory.mktemp("bento-outage") / "serve.log")
    yield private, bento
    stop(bento)
    if private.process.poll() is None:
        private.kill()


def test_redis_down_gives_flagged_fallbacks_or_503_and_recovers_unaided(world, outage):
    private, bento = outage
    seen, unseen = body(world.items[2]), body(world.items[3])
    with httpx.Client(base_url=bento.http, timeout=10) as http, grpc.insecure_channel(bento.grpc_address) as channel:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        first = http.post("/predict", json=seen).json()
        assert first["degraded"] is False and first["features_as_of"]

        private.kill()
        fallback = http.post("/predict", json=seen)
        assert fallback.status_code == 200, fallback.text
        assert fallback.json()["degraded"] is True and fallback.json()["price_per_day"] == first["price_per_day"]
        assert fallback.json()["features_as_of"] == first["features_as_of"]
        down = http.post("/predict", json=unseen)
        assert down.status_code == 503 and "Redis" in down.json()["error"]
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(pricing_pb2.PredictRequest(**unseen))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert http.get("/readyz").status_code == 503
        assert http.get("/health").status_code == 503 and http.get("/health").json()["redis"] is False

        private.start()  # the Bento is not restarted
        back = wait_for(lambda: (r := http.post("/predict", json=unseen)).status_code == 200 and r.json(), 30,
                        "quotes after Redis came back")  # fmt: skip
        assert back["degraded"] is False
        assert http.post("/predict", json=seen).json()["degraded"] is False
        assert http.get("/readyz").status_code == 200
    assert bento.process.poll() is None


def test_kafka_down_still_quotes_and_counts_what_was_not_logged(world, outage):
    _, bento = outage
    with httpx.Client(base_url=bento.http, timeout=10) as http:
        for item in world.items[:8]:
            assert http.post("/predict", json=body(item)).status_code == 200
        health = http.get("/health").json()
    assert health["kafka"] is False and health["status"] == "degraded"
    assert health["predictions_logged"] == 0
    assert health["predictions_unlogged"] >= 8 - 3 and health["predictions_pending"] <= 3
