"""A producer that is not this project's Python: kcat (librdkafka, C) lists an item and books it
with JSON written by hand, checked first against the published schema
(contracts/events.schema.json) as the producer's CI would, and the real feature consumer turns
those messages into the online features. The key is the item id and librdkafka's murmur2
partitioner puts each item's messages where the Java and Python clients do; an event the
schema refuses is a dead letter with its reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import UTC, date, datetime, timedelta

import jsonschema_rs
import pytest

from rental.servers.topics import admin_client, ensure_topics
from streaming.contracts import EVENTS_SCHEMA
from streaming.feature_store.store import feature_store
from streaming.simulator.history import simulate
from streaming.simulator.world import SimulationConfig
from streaming.wire.partitioning import partition_of
from tests.integration.test_stream_fuzz import _read_to_end
from tests.worlds.stream_world import kill, make_world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

END = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
REDIS_DB = 1
NEW = "item_from_kcat"


def _kcat(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> None:
    """Each (key, value) as one message, the way a producer's shell script or a C service would."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is not installed: `make install` (or apt-get install kcat)"
    lines = "".join(f"{key}\t{value}\n" for key, value in messages)
    done = subprocess.run(
        [kcat, "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-X", "partitioner=murmur2_random", "-X", "acks=all"],
        input=lines.encode(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr, done.stderr.decode()


def _validator(schema: dict, topic: str):
    """The topic's value schema, as a producer in any language would pick it from x-kafka."""
    value = {"$ref": schema["x-kafka"][topic]["value"]["$ref"], "$defs": schema["$defs"]}
    return jsonschema_rs.validator_for(value, validate_formats=True)


def _messages(run: str, old: str, category: str) -> tuple[str, list[tuple[str, str]], tuple[str, str]]:
    """A listing, four booking events and one the schema refuses, written as another team would:
    their own key order and spacing, "Z" and offset times, whole and fractional prices."""
    ana, ben = f"cust_kcat_{run}_a", f"cust_kcat_{run}_b"
    at = (NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.250+02:00")
    listing = (f'{{"item_id": "{NEW}", "schema_version": 1, "brand": "Atelier Kcat", "category": "{category}", '
               '"colour": "ink blue", "units": 2}')  # fmt: skip
    bookings = [
        (NEW, '{"event_type":"booking_created","schema_version":1,"event_id":"k1:created","booking_id":"k1",'
              f'"item_id":"{NEW}","customer_id":"{ana}","event_time":"{at}","rental_start":"2026-06-10",'
              '"rental_days":3,"price_per_day":40}'),
        (NEW, '{"schema_version":1,"event_type":"booking_created","event_id":"k2:created","booking_id":"k2",'
              f'"item_id":"{NEW}","customer_id":"{ben}","event_time":"{later}","rental_start":"2026-06-12",'
              '"rental_days":2,"price_per_day":50.5,"currency":"GBP"}'),
        (NEW, '{"schema_version":1,"event_type":"booking_cancelled","event_id":"k1:cancelled","booking_id":"k1",'
              f'"item_id":"{NEW}","customer_id":"{ana}","event_time":"{later}"}}'),
        (old, '{"schema_version":1,"event_type":"booking_created","event_id":"k3:created","booking_id":"k3",'
              f'"item_id":"{old}","customer_id":"{ana}","event_time":"{at}","rental_start":"2026-06-02",'
              '"rental_days":1,"price_per_day":12.25}'),
    ]  # fmt: skip
    refused = (old, '{"schema_version":1,"event_type":"booking_created","event_id":"k4:created","booking_id":"k4",'
                    f'"item_id":"{old}","customer_id":"{ana}","event_time":"{at}","rental_start":"2026-06-02",'
                    '"rental_days":0,"price_per_day":12.25}')  # fmt: skip
    return listing, bookings, refused


def test_events_produced_by_kcat_become_features(tmp_path, settings):
    history = simulate(SimulationConfig(seed=19, items=30, bookings=300, end=END))
    run = uuid.uuid4().hex[:8]
    world = make_world(tmp_path, settings, history, redis_db=REDIS_DB, RENTAL_STREAM_NOW=NOW.isoformat(),
                       RENTAL_TOPIC_ITEMS=f"test.{run}.items")  # fmt: skip
    s = world.settings
    with admin_client(s.bootstrap_servers) as admin:
        ensure_topics(admin, {s.topic_items: (s.items_partitions, -1)}, compacted={s.topic_items})
    world.extra_topics.append(s.topic_items)
    old = str(history.items["item_id"].iloc[0])
    listing, bookings, refused = _messages(run, old, str(history.items["category"].iloc[0]))
    ana, ben = f"cust_kcat_{run}_a", f"cust_kcat_{run}_b"
    try:
        # The producer's CI: every message valid against the published schema, the bad one not.
        schema = json.loads(EVENTS_SCHEMA.read_text())
        assert _validator(schema, "items").is_valid(json.loads(listing))
        booking_schema = _validator(schema, "bookings")
        for _, value in bookings:
            assert booking_schema.is_valid(json.loads(value)), list(booking_schema.iter_errors(json.loads(value)))
        assert not booking_schema.is_valid(json.loads(refused[1]))

        _kcat(s.bootstrap_servers, s.topic_items, [(NEW, listing)])
        _kcat(s.bootstrap_servers, s.topic_bookings, [*bookings, refused])

        # librdkafka's murmur2_random partitioner agrees with Kafka's default (Java, kafka-python).
        produced = _read_to_end(s.bootstrap_servers, s.topic_bookings)
        assert len(produced) == len(bookings) + 1
        for record in produced:
            assert record.partition == partition_of(record.key.decode(), s.bookings_partitions), record

        consumer = world.consumer("--until-idle", "3")
        try:
            assert consumer.wait(timeout=180) == 0, world.logs()
        finally:
            if consumer.poll() is None:
                kill(consumer)

        store = feature_store(s)
        popularity = ["bookings_30d", "revenue_30d", "cancellations_30d"]
        items = store.get_online_features(
            features=[f"item_popularity:{f}" for f in popularity] + ["item_attributes:brand", "item_attributes:colour"],
            entity_rows=[{"item_id": NEW}, {"item_id": old}],
        ).to_dict()
        assert items["bookings_30d"] == [2, 1]
        assert items["revenue_30d"] == [pytest.approx(3 * 40 + 2 * 50.5), pytest.approx(12.25)]
        assert items["cancellations_30d"] == [1, 0]
        assert items["brand"][0] == "Atelier Kcat" and items["colour"][0] == "ink blue"
        customers = store.get_online_features(
            features=["customer_history:customer_bookings_365d", "customer_history:customer_cancellations_365d"],
            entity_rows=[{"customer_id": ana}, {"customer_id": ben}],
        ).to_dict()
        assert customers["customer_bookings_365d"] == [2, 1]
        assert customers["customer_cancellations_365d"] == [1, 0]

        letters = [json.loads(r.value) for r in _read_to_end(s.bootstrap_servers, s.topic_bookings_dlq)]
        assert [letter["payload"] for letter in letters] == [refused[1]]
        assert "rental_days" in letters[0]["reason"]
    finally:
        world.remove_topics()
