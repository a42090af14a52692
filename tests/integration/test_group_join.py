"""A stage's consumer joins its group on a topic made a moment before and gets every partition in
its first assignment: no empty assignment first, whose follow-up rejoin kafka-python 3.0 can lose
(the member then owned nothing for 30 s, spinning a core)."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import ConsumerRebalanceListener

from rental.servers.topics import admin_client, ensure_topics
from streaming.consumer.joining import join_group

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class _Assignments(ConsumerRebalanceListener):
    def __init__(self):
        self.calls: list[set] = []

    def on_partitions_revoked(self, revoked):
        pass

    def on_partitions_assigned(self, assigned):
        self.calls.append({tp.partition for tp in assigned})


@pytest.mark.parametrize("attempt", range(3))
def test_first_assignment_holds_every_partition_of_a_new_topic(settings, attempt):
    topic = f"test.join.{uuid.uuid4().hex[:8]}"
    with admin_client(settings.bootstrap_servers) as admin:
        ensure_topics(admin, {topic: (6, 3_600_000)})
    listener = _Assignments()
    consumer = join_group(settings, topic, f"test-join-{uuid.uuid4().hex[:8]}", "test-join", listener)
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=100)
        assert listener.calls == [set(range(6))]
    finally:
        consumer.close(autocommit=False)
        with admin_client(settings) as admin:
            admin.delete_topics([topic], raise_errors=False)
