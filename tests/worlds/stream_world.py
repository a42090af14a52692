"""An isolated streaming world for a test or a benchmark: its own data dir, topics, consumer
groups and Redis db, on the same broker and Redis server, so runs never see each other.
``remove_topics`` deletes its topics afterwards: a benchmark's are ~50 MB, and a broker that
kept every run's had thousands of partitions to reload at each start."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_py

from rental.servers.topics import admin_client, ensure_topics
from rental.settings import Settings
from streaming.feature_store.store import apply
from streaming.history.tables import History, write_history


@dataclass
class StreamingWorld:
    settings: Settings
    env: dict[str, str]
    extra_topics: list[str] = field(default_factory=list)  # made by ``fresh_start``

    def consumer(self, *args: str, **env: str) -> subprocess.Popen:
        """`rental stream features` as its own process, as an operator would run it."""
        log = open(self.settings.data_dir / f"consumer-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "rental.cli", "stream", "features", "--quiet", *args],
            env=self.env | env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.settings.data_dir.glob("consumer-*.log")))

    @property
    def topics(self) -> list[str]:
        s = self.settings
        return [s.topic_bookings, s.topic_bookings_dlq, s.topic_bookings_by_customer, s.topic_bookings_by_category]

    def fresh_start(self) -> dict[str, str]:
        """Environment for a consumer that has never run, over the same bookings topic: its own
        groups and forwarded topics, an emptied Redis db, no offline rows or saved state."""
        s, run = self.settings, uuid.uuid4().hex[:8]
        env = {"RENTAL_TOPIC_BOOKINGS_BY_CUSTOMER": f"{s.topic_bookings}.{run}.by-customer",
               "RENTAL_TOPIC_BOOKINGS_BY_CATEGORY": f"{s.topic_bookings}.{run}.by-category",
               "RENTAL_CONSUMER_GROUP_PREFIX": f"{s.consumer_group_prefix}-{run}"}  # fmt: skip
        specs = s.topic_specs()
        topics = {env["RENTAL_TOPIC_BOOKINGS_BY_CUSTOMER"]: specs[s.topic_bookings_by_customer],
                  env["RENTAL_TOPIC_BOOKINGS_BY_CATEGORY"]: specs[s.topic_bookings_by_category]}  # fmt: skip
        with admin_client(s) as admin:
            ensure_topics(admin, topics)
        self.extra_topics += topics
        for folder in (s.offline_dir, s.state_dir):
            shutil.rmtree(folder, ignore_errors=True)
        redis_py.Redis.from_url(s.redis_url).flushdb()
        return env

    def remove_topics(self) -> None:
        with admin_client(self.settings) as admin:
            admin.delete_topics(self.topics + self.extra_topics, raise_errors=False)


def make_world(tmp: Path, base: Settings, history: History, redis_db: int, **overrides: str) -> StreamingWorld:
    run = uuid.uuid4().hex[:8]
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    env_values = {
        "RENTAL_DATA_DIR": str(tmp),
        "REDIS_URL": redis_url,
        "RENTAL_TOPIC_BOOKINGS": f"test.{run}.bookings",
        "RENTAL_TOPIC_BOOKINGS_DLQ": f"test.{run}.bookings.dlq",
        "RENTAL_TOPIC_BOOKINGS_BY_CUSTOMER": f"test.{run}.by-customer",
        "RENTAL_TOPIC_BOOKINGS_BY_CATEGORY": f"test.{run}.by-category",
        "RENTAL_TOPIC_ITEMS": f"test.{run}.items",  # never the shared catalogue; made by the tests that list items
        "RENTAL_CONSUMER_GROUP_PREFIX": f"test-{run}",
        "RENTAL_KAFKA_PORT": str(base.kafka_port),
        **overrides,
    }
    if base.kafka_is_external:
        env_values["KAFKA_BOOTSTRAP_SERVERS"] = base.bootstrap_servers
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTAL_")} | env_values
    previous = {k: os.environ.get(k) for k in env_values}
    os.environ.update(env_values)
    try:
        settings = Settings()
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    redis_py.Redis.from_url(redis_url).flushdb()
    write_history(history, settings.history_dir)
    apply(settings)
    world = StreamingWorld(settings, env)
    with admin_client(settings) as admin:
        specs = settings.topic_specs()
        ensure_topics(admin, {name: specs[name] for name in world.topics})
    return world


def wait_for(condition, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
