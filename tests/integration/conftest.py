"""Integration tests run against the real Kafka broker and the real Redis, never mocks.

The session fixture starts them through ``rental.servers`` (or only checks the servers named
by ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``) and at the end stops only what it started, so
services a developer already had running stay up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis as redis_py

from rental import servers
from rental.servers.topics import admin_client, ensure_topics
from rental.settings import Settings, get_settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs the real Kafka broker and Redis (started by the test setup)")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session", autouse=True)
def local_services(settings: Settings) -> Iterator[dict[str, bool]]:
    """name -> True if this session started it (and so must stop it)."""
    started: dict[str, bool] = {}
    try:
        for name in servers.SERVICES:
            started.update(servers.up([name], say=lambda _: None))
    except servers.ServiceError as exc:
        servers.down([name for name, ours in started.items() if ours], say=lambda _: None)
        pytest.exit(f"integration services could not start: {exc}", returncode=3)
    yield started
    servers.down([name for name, ours in started.items() if ours], say=lambda _: None)


@pytest.fixture
def fresh_topic(settings: Settings) -> Iterator[Callable[[int], str]]:
    """Factory for a unique topic with n partitions (on the session's broker unless another is
    named), deleted after the test."""
    created: dict[str, list[str]] = {}

    def make(partitions: int, bootstrap_servers: str | None = None) -> str:
        bootstrap_servers = bootstrap_servers or settings.bootstrap_servers
        name = f"test.{uuid.uuid4().hex[:12]}"
        with admin_client(bootstrap_servers) as admin:
            ensure_topics(admin, {name: (partitions, 3600 * 1000)})
        created.setdefault(bootstrap_servers, []).append(name)
        return name

    yield make
    for bootstrap_servers, names in created.items():
        with admin_client(bootstrap_servers) as admin:
            admin.delete_topics(names, raise_errors=False)


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    client.close()
