"""Round trips on the real Redis that Feast's online store will use, and its lifecycle.

The lifecycle tests start, restart and refuse Redis servers of their own (their own data
directory and a free port), so the Redis of the session, perhaps a developer's, is never bounced.
"""

from __future__ import annotations

import socket
import uuid

import pytest
import redis as redis_py

from rental.servers import ServiceError
from rental.servers.redis import RedisServer, ping

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def prefix(redis_client):
    prefix = f"test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


def test_set_get(redis_client, prefix):
    assert redis_client.ping() is True
    assert redis_client.get(f"{prefix}missing") is None
    assert redis_client.set(f"{prefix}price", "42.50") is True
    assert redis_client.get(f"{prefix}price") == "42.50"
    assert redis_client.set(f"{prefix}price", "43.00", xx=True) is True
    assert redis_client.set(f"{prefix}price", "0", nx=True) is None  # exists: not overwritten
    assert redis_client.get(f"{prefix}price") == "43.00"
    assert redis_client.incrbyfloat(f"{prefix}price", 1.5) == pytest.approx(44.5)
    redis_client.set(f"{prefix}ttl", "x", ex=60)
    assert 0 < redis_client.ttl(f"{prefix}ttl") <= 60


def test_hash_round_trip(redis_client, prefix):
    key = f"{prefix}item:ITM-00042"
    features = {"bookings_7d": "3", "bookings_30d": "11", "revenue_30d": "845.5", "category": "gown"}
    assert redis_client.hset(key, mapping=features) == len(features)
    assert redis_client.hgetall(key) == features
    assert redis_client.hmget(key, ["bookings_7d", "category", "absent"]) == ["3", "gown", None]
    assert redis_client.hincrby(key, "bookings_7d", 2) == 5
    assert redis_client.hdel(key, "category") == 1
    assert sorted(redis_client.hkeys(key)) == ["bookings_30d", "bookings_7d", "revenue_30d"]

    pipe = redis_client.pipeline()
    for i in range(100):
        pipe.hset(f"{prefix}item:{i}", mapping={"n": i, "sq": i * i})
    pipe.execute()
    pipe = redis_client.pipeline()
    for i in range(100):
        pipe.hgetall(f"{prefix}item:{i}")
    assert pipe.execute() == [{"n": str(i), "sq": str(i * i)} for i in range(100)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def private(settings, tmp_path):
    """A Redis of our own in ``tmp_path`` on a free port; stopped after the test."""
    if settings.redis_is_external:
        pytest.skip("REDIS_URL names an external Redis: this checks our own")
    server = RedisServer(settings.model_copy(update={"data_dir": tmp_path, "redis_port": _free_port()}))
    yield server
    server.stop()


def test_lifecycle_and_restart_of_our_own_server(private):
    said: list[str] = []
    assert private.start(said.append) is True
    pid = private.running_pid()
    url = private.s.redis_url
    assert said == [f"redis: ready at {url} (pid {pid}), data {private.files.data}, log {private.files.log}"]
    assert int(ping(url)["process_id"]) == pid
    assert private.status().origin == "started by us"

    assert RedisServer(private.s).start(said.append) is False  # the pid file names it: reused
    assert said[-1] == f"redis: already running at {url} (pid {pid})"
    drifted = RedisServer(private.s.model_copy(update={"redis_port": _free_port()}))
    with pytest.raises(ServiceError, match=rf"redis: our server \(pid {pid}\) runs with other settings"):
        drifted.start()

    with redis_py.Redis.from_url(url) as client:
        client.hset("durable", mapping={"a": "1", "b": "2"})

        assert private.stop(said.append) is True
        assert said[-1] == f"redis: stopped (pid {pid})"
        assert private.status().state == "stopped" and not private.files.pid.exists()
        with pytest.raises(ServiceError, match="no Redis answers at"):
            ping(url, timeout_s=0.5)
        assert private.start() is True
        assert client.hgetall("durable") == {b"a": b"1", b"b": b"2"}  # append-only file replayed; client reconnects


def test_port_of_the_session_redis_is_not_taken_over(settings, tmp_path):
    if settings.redis_is_external:
        pytest.skip("REDIS_URL names an external Redis: no local port to guard")
    other = RedisServer(settings.model_copy(update={"data_dir": tmp_path}))  # same port, not its pid file
    with pytest.raises(ServiceError, match=f"port {settings.redis_port} on {settings.redis_host} is already in use"):
        other.start()
    assert not other.files.pid.exists()
    assert RedisServer(settings).status().state == "running"
