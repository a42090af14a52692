"""Kafka over SASL_SSL, as a managed cluster asks: the stream and the prediction log over it.

A second broker of the test's own (the pinned jars, its own directory and free ports; the
shared broker is not touched) listens only on SASL_SSL: TLS with a CA and broker certificate
the test makes (PEM key and trust stores), SCRAM-SHA-512 users created when its storage is
formatted, brokers talking to each other over the same listener. Booking events go through the
real feature consumer (`rental stream features`, all three stages) and its online features
equal the backfill's; quotes go through the service's prediction log and are read back; a
client with a wrong password gets an authentication error that does not show the password.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from datetime import UTC, date, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition

from rental.connections import kafka_options
from rental.servers import ServiceError
from rental.servers.kafka import KafkaServer, jars_fetched
from rental.servers.redis import binary, ping
from rental.servers.topics import admin_client
from rental.settings import Settings
from streaming.backfill import timeline
from streaming.consumer.stages import stages
from streaming.events import to_us
from streaming.feature_store.store import feature_store
from streaming.features.pipeline import Catalogue, FeaturePipeline
from streaming.producer import make_producer, send_events
from streaming.simulator.history import simulate
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig
from tests.integration.test_stream_features import _assert_online_equal, _expected_store
from tests.worlds.certificates import CertificateAuthority
from tests.worlds.ports import free_ports
from tests.worlds.stream_world import make_world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

USER, BROKER_USER = "pricing", "broker"
PASSWORD = "s3cr3t-P@ss:w0rd%/é"  # Kafka's SCRAM user syntax takes anything but , = ] and quotes
MECHANISM = "SCRAM-SHA-512"
END = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


class SaslSslBroker(KafkaServer):
    """The project's broker with its one client listener on SASL_SSL instead of PLAINTEXT."""

    listener_protocol = "SASL_SSL"

    def __init__(self, settings: Settings, keystore, broker_password: str):
        super().__init__(settings)
        self.keystore, self.broker_password = keystore, broker_password

    def properties(self) -> dict[str, str]:
        s, host = self.s, self.s.kafka_host
        login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
        return super().properties() | {
            "listeners": f"SASL_SSL://{host}:{s.kafka_port},CONTROLLER://{host}:{s.kafka_controller_port}",
            "advertised.listeners": f"SASL_SSL://{host}:{s.kafka_port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": (
                f'{login} username="{BROKER_USER}" password="{self.broker_password}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(s.kafka_ssl_cafile),
            "ssl.client.auth": "none",
        }

    def format_args(self) -> list[str]:
        users = {BROKER_USER: self.broker_password, USER: PASSWORD}
        return [arg for name, password in users.items()
                for arg in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")]  # fmt: skip


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """Settings of a client of the SASL_SSL broker (its Redis a private one); both stopped after."""
    base = Settings()
    if not jars_fetched(base) or binary(base) is None:
        pytest.skip("the Kafka jars or redis-server are not installed (rental services install)")
    root = tmp_path_factory.mktemp("sasl-ssl")
    ca = CertificateAuthority(root / "tls")
    issued = ca.issue("kafka-broker", server=True)
    keystore = root / "tls" / "kafka-broker.keystore.pem"  # Kafka's PEM key store: the key, then the chain
    keystore.write_bytes(issued.key.read_bytes() + issued.cert.read_bytes())
    port, controller_port, redis_port = free_ports(3)
    redis = subprocess.Popen(
        [binary(base), "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no",
         "--dir", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    settings = Settings(
        data_dir=root / "data",
        kafka_bootstrap_servers=None,
        kafka_port=port,
        kafka_controller_port=controller_port,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=MECHANISM,
        kafka_sasl_username=USER,
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=ca.cert,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
    )
    broker = SaslSslBroker(settings, keystore, broker_password=uuid.uuid4().hex)
    try:
        broker.start()  # ready once a probe made the round trip over SASL_SSL as USER
        ping(settings.redis_url, timeout_s=5, settings=settings)
        yield settings
    finally:
        broker.stop()
        redis.terminate()
        redis.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


def _security_env(s: Settings) -> dict[str, str]:
    """The environment a process of the stream needs to reach the broker as USER."""
    return {
        "RENTAL_KAFKA_SECURITY_PROTOCOL": s.kafka_security_protocol,
        "RENTAL_KAFKA_SASL_MECHANISM": MECHANISM,
        "RENTAL_KAFKA_SASL_USERNAME": USER,
        "RENTAL_KAFKA_SASL_PASSWORD": PASSWORD,
        "RENTAL_KAFKA_SSL_CAFILE": str(s.kafka_ssl_cafile),
    }


def test_the_feature_consumer_streams_bookings_over_sasl_ssl(secure, tmp_path):
    history = simulate(SimulationConfig(seed=11, items=60, bookings=1_500, end=END))
    world = make_world(tmp_path, secure, history, redis_db=1, RENTAL_STREAM_NOW=NOW.isoformat(),
                       RENTAL_CHECKPOINT_EVERY_S="0.3", **_security_env(secure))  # fmt: skip
    assert world.settings.kafka_security_protocol == "SASL_SSL" and world.settings.kafka_port == secure.kafka_port
    producer = make_producer(world.settings)
    sent = send_events(producer, world.settings.topic_bookings, history_events(history.bookings))
    producer.close()

    consumer = world.consumer("--until-idle", "4")
    assert consumer.wait(timeout=240) == 0, world.logs()
    assert PASSWORD not in world.logs()

    pipeline = FeaturePipeline(Catalogue.from_items(history.items))  # the backfill, at the same moment
    events = timeline(history.bookings)
    for args in zip(*(events[c].tolist() for c in ("kind", "event_id", "item_id", "customer_id", "time_us", "price_pence", "rental_days")), strict=True):  # fmt: skip
        pipeline.process(*args)
    pipeline.advance(to_us(NOW))
    _assert_online_equal(feature_store(world.settings), _expected_store(world, pipeline, redis_db=2), history)

    read = {name: _committed_and_end(world.settings, stage.group(world.settings), stage.topic)
            for name, stage in stages(world.settings).items()}  # fmt: skip
    assert read["items"] == (sent, sent)
    assert all(committed == end > 0 for committed, end in read.values()), read  # each stage read to the end


def _committed_and_end(settings: Settings, group: str, topic: str) -> tuple[int, int]:
    consumer = KafkaConsumer(**kafka_options(settings), group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(parts)
        return sum(consumer.committed(tp) or 0 for tp in parts), sum(ends.values())
    finally:
        consumer.close()


def test_the_prediction_log_produces_over_sasl_ssl(secure):
    from bento_service.prediction_log import PredictionLog

    settings = secure.model_copy(update={"topic_predictions": f"test.{uuid.uuid4().hex[:8]}.predictions"})
    with admin_client(settings) as admin:
        admin.create_topics({settings.topic_predictions: {"num_partitions": 2, "replication_factor": -1}})
    quoted = datetime.now(UTC)
    records = [
        {"request_id": f"r{i}", "quoted_at": quoted, "protocol": "http", "item_id": f"item_{i}", "customer_id": None,
         "rental_start": date(2026, 7, 1), "rental_days": 3, "features": {"bookings_7d": i}, "price_per_day": 40.0 + i,
         "total_price": 120.0 + 3 * i, "currency": "GBP", "model_version": "7", "features_as_of": None,
         "degraded": False, "cold_start": False, "latency_ms": 1.5}
        for i in range(50)
    ]  # fmt: skip
    log = PredictionLog(settings)
    log.start()
    for record in records:
        log.publish(record)
    deadline = time.monotonic() + 60
    while log.logged < len(records) and time.monotonic() < deadline:
        time.sleep(0.1)
    log.close()
    assert (log.logged, log.unlogged) == (len(records), 0)

    consumer = KafkaConsumer(**kafka_options(settings), enable_auto_commit=False, consumer_timeout_ms=10_000)
    try:
        parts = [TopicPartition(settings.topic_predictions, p) for p in range(2)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        read = [json.loads(r.value) for r in consumer]
    finally:
        consumer.close()
    assert sorted(r["request_id"] for r in read) == sorted(r["request_id"] for r in records)
    assert {r["item_id"]: r["price_per_day"] for r in read} == {r["item_id"]: r["price_per_day"] for r in records}


def test_a_wrong_password_is_an_authentication_error_that_does_not_show_it(secure):
    wrong_password = "not-" + PASSWORD
    wrong = secure.model_copy(update={"kafka_sasl_password": type(secure.kafka_sasl_password)(wrong_password)})
    with pytest.raises(ServiceError) as refused, admin_client(wrong, timeout_s=10):
        pass
    said = str(refused.value)
    assert f"no Kafka broker answers at 127.0.0.1:{secure.kafka_port}" in said
    # kafka-python sees the refusal itself, or only the broker closing each connection after it.
    assert re.search(rf"refuse[sd] user '{USER}' \({MECHANISM}\)", said), said
    assert "RENTAL_KAFKA_SASL_PASSWORD" in said
    assert wrong_password not in said and PASSWORD not in said
    plaintext = secure.model_copy(update={"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None,
                                          "kafka_sasl_username": None, "kafka_sasl_password": None,
                                          "kafka_ssl_cafile": None})  # fmt: skip
    # The SASL_SSL listener is all there is: no way in without TLS and a user.
    with pytest.raises(ServiceError), admin_client(plaintext, timeout_s=5) as admin:
        admin.list_topics()
