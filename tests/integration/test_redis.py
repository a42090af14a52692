"""Round trips on the real Redis that Feast's online store will use."""

from __future__ import annotations

import uuid

import pytest

from rental.servers import redis as redis_service

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


def test_data_survives_restart(settings, redis_client, prefix):
    if settings.redis_is_external:
        pytest.skip("REDIS_URL names an external Redis: not ours to restart")
    redis_client.hset(f"{prefix}durable", mapping={"a": "1", "b": "2"})
    assert redis_service.stop(settings) is True
    assert redis_service.status(settings).state == "stopped"
    assert redis_service.start(settings) is True
    assert redis_client.hgetall(f"{prefix}durable") == {"a": "1", "b": "2"}  # client reconnects by itself
