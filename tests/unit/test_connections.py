"""Client options from settings (Kafka SASL/TLS, Redis TLS and ACL users, Feast's connection
string) and the masking of credentials wherever they would be printed."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from feast.infra.online_stores.redis import RedisOnlineStore
from kafka import KafkaAdminClient

from rental.connections import (
    ConnectionSettingsError,
    kafka_failure_note,
    kafka_options,
    mask_text,
    mask_url,
    redis_client,
    redis_credentials,
    redis_tls_options,
    secrets_of,
)
from rental.settings import Settings
from streaming.feature_store.store import feast_redis_connection

PASSWORD = "p@ss:w/rd,%40#?=1 é"  # every character a URL or Feast's parser treats specially


def _settings(**values) -> Settings:
    return Settings.model_validate(values)


@pytest.fixture
def pem(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


# ---------------------------------------------------------------------------- Kafka


def test_plaintext_by_default_names_only_the_brokers():
    assert kafka_options(Settings()) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert kafka_options(Settings(), "other:1")["bootstrap_servers"] == "other:1"


def test_sasl_ssl_gives_every_client_the_mechanism_credentials_and_ca(pem):
    s = _settings(
        KAFKA_BOOTSTRAP_SERVERS="broker:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="pricing",
        kafka_sasl_password=PASSWORD,
        kafka_ssl_cafile=str(pem),
    )
    options = kafka_options(s)
    assert options == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "pricing",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": str(pem),
        "ssl_certfile": None,
        "ssl_keyfile": None,
        "ssl_check_hostname": True,
    }
    assert PASSWORD not in repr(options) and PASSWORD not in str(options)  # a logged config shows '***'
    assert options["sasl_plain_password"].encode() == PASSWORD.encode()  # what SCRAM hashes is the real one


def test_kafka_admin_clients_debug_log_of_its_configuration_hides_the_password(pem, caplog):
    s = _settings(
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="pricing",
        kafka_sasl_password=PASSWORD,
    )
    with caplog.at_level(logging.DEBUG, logger="kafka"), pytest.raises(Exception):  # noqa: B017 no broker there
        KafkaAdminClient(**kafka_options(s), bootstrap_timeout_ms=200, request_timeout_ms=200)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sasl_plain_password" in logged and PASSWORD not in logged


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs RENTAL_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u"},
            "needs RENTAL_KAFKA_SASL_USERNAME and RENTAL_KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_password": "x"},
            "RENTAL_KAFKA_SASL_MECHANISM, RENTAL_KAFKA_SASL_PASSWORD set, but RENTAL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        ({"kafka_ssl_cafile": "/etc/hostname"}, "RENTAL_KAFKA_SSL_CAFILE set, but .*=PLAINTEXT does not use TLS"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"}, "/no/such/ca.pem: no such file"),
    ],
)
def test_kafka_settings_no_client_could_use_are_refused_naming_the_setting(values, message):
    with pytest.raises(ConnectionSettingsError, match=message):
        kafka_options(_settings(**values))


def test_the_password_is_in_no_error(pem):
    s = _settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password=PASSWORD, kafka_ssl_cafile=str(pem))
    with pytest.raises(ConnectionSettingsError) as caught:
        kafka_options(s)
    assert PASSWORD not in str(caught.value)


# ---------------------------------------------------------------------------- Redis


def _redis_url(user: str | None, password: str | None, scheme: str = "rediss") -> str:
    auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@" if password is not None else ""
    return f"{scheme}://{auth}cache.internal:6380/3"


def test_redis_py_gets_the_acl_user_the_decoded_password_and_the_ca(pem):
    s = _settings(REDIS_URL=_redis_url("pricing", PASSWORD), redis_ssl_ca_file=str(pem))
    assert redis_credentials(s.redis_url) == ("pricing", PASSWORD)
    assert redis_tls_options(s) == {"ssl_ca_certs": str(pem)}
    client = redis_client(s, socket_timeout=1.0)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == ("pricing", PASSWORD, str(pem))
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["socket_timeout"]) == ("cache.internal", 6380, 3, 1.0)
    client.close()


def test_redis_tls_files_with_a_plain_url_are_refused(pem):
    s = _settings(REDIS_URL=_redis_url("u", PASSWORD, scheme="redis"), redis_ssl_ca_file=str(pem))
    with pytest.raises(ConnectionSettingsError, match="RENTAL_REDIS_SSL_CA_FILE set, but REDIS_URL") as caught:
        redis_tls_options(s)
    assert PASSWORD not in str(caught.value) and quote(PASSWORD, safe="") not in str(caught.value)


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("pricing", PASSWORD),
        (None, PASSWORD),
        ("pricing", "123"),
        ("pricing", "null"),
        ("pricing", "true"),
        (None, None),
    ],
)
def test_feast_gets_what_redis_py_would_from_the_url(pem, user, password):
    """Feast splits its string at commas and JSON-decodes values: the credentials arrive unchanged."""
    s = _settings(REDIS_URL=_redis_url(user, password), redis_ssl_ca_file=str(pem))
    nodes, params = RedisOnlineStore._parse_connection_string(feast_redis_connection(s))
    assert nodes == [{"host": "cache.internal", "port": "6380"}]
    expected = {"db": 3, "ssl": True, "ssl_ca_certs": str(pem)}
    expected |= {"username": user} if user else {}
    expected |= {"password": password} if password is not None else {}
    assert params == expected


def test_feast_connection_of_the_local_default_and_url_options():
    assert feast_redis_connection(Settings()) == "127.0.0.1:6379,db=0"
    s = _settings(REDIS_URL="rediss://h:6380/0?ssl_cert_reqs=none")
    assert RedisOnlineStore._parse_connection_string(feast_redis_connection(s))[1] == {
        "db": 0,
        "ssl": True,
        "ssl_cert_reqs": "none",
    }


# ---------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("address", "printed"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:hunter2@cache:6380/1", "rediss://app:***@cache:6380/1"),
        ("rediss://app:p@ss%25w@rd@cache:6380/1", "rediss://app:***@cache:6380/1"),  # unencoded @ and %
        ("rediss://app:p%40ss%25@cache:6380/1", "rediss://app:***@cache:6380/1"),
        ("redis://:ab/cd@cache:6379/0", "redis://:***@cache:6379/0"),  # an unencoded / is no end to it
        ("redis://app@cache:6379/0", "redis://app@cache:6379/0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("https://user:tok@mlflow.internal/", "https://user:***@mlflow.internal/"),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        ("broker-1:9092,broker-2:9092", "broker-1:9092,broker-2:9092"),
        ("", ""),
    ],
)
def test_printed_addresses_carry_no_password(address, printed):
    assert mask_url(address) == printed


def test_text_loses_url_passwords_and_every_known_secret():
    s = _settings(
        REDIS_URL=_redis_url("pricing", PASSWORD),
        kafka_sasl_password="kafka-secret",
        serve_api_tokens="tok-one, tok-two",
    )
    assert set(secrets_of(s)) >= {PASSWORD, quote(PASSWORD, safe=""), "kafka-secret", "tok-one", "tok-two"}
    text = (
        f"could not reach {s.redis_url}; SASL user pricing password kafka-secret rejected; "
        f"token tok-two; decoded {PASSWORD}; plain http://u:x@h/ kept as http://u:***@h/"
    )
    masked = mask_text(text, secrets_of(s))
    for secret in secrets_of(s):
        assert secret not in masked
    assert "pricing" in masked and "cache.internal:6380/3" in masked and masked.count("***") >= 5
    assert mask_text("nothing secret here: broker-1:9092") == "nothing secret here: broker-1:9092"


def test_settings_repr_shows_no_credential():
    s = _settings(
        REDIS_URL=_redis_url("pricing", PASSWORD),
        kafka_sasl_password="kafka-secret",
        serve_api_tokens="tok-one",
        MLFLOW_TRACKING_URI="https://u:mlflow-secret@mlflow/",
    )
    shown = repr(s) + str(s)
    for secret in ("kafka-secret", "tok-one", "mlflow-secret", quote(PASSWORD, safe="")):
        assert secret not in shown


def test_a_refused_login_is_named_even_when_kafka_python_saw_only_the_close():
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError, SaslAuthenticationFailedError

    s = _settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                  kafka_sasl_username="pricing", kafka_sasl_password=PASSWORD)  # fmt: skip
    timeout = KafkaTimeoutError("Unable to bootstrap from broker:9093")
    closed = kafka_failure_note(s, [KafkaConnectionError("socket disconnected")] * 3 + [timeout])
    assert "closed all 3 connections" in closed and "refuses user 'pricing' (SCRAM-SHA-512)" in closed
    refused = kafka_failure_note(s, [SaslAuthenticationFailedError(f"invalid credentials for {PASSWORD}"), timeout])
    assert "the broker refused user 'pricing' (SCRAM-SHA-512)" in refused and "RENTAL_KAFKA_SASL_PASSWORD" in refused
    assert PASSWORD not in refused
    plaintext = kafka_failure_note(Settings(), [KafkaConnectionError("socket disconnected"), timeout])
    assert plaintext == "; last failure: KafkaConnectionError('socket disconnected')"
    assert kafka_failure_note(s, [timeout]) == ""


def test_a_local_broker_is_not_started_for_settings_that_ask_for_a_secured_one(tmp_path, pem):
    from rental.servers import ServiceError
    from rental.servers.kafka import KafkaServer

    s = _settings(data_dir=str(tmp_path), kafka_security_protocol="SSL", kafka_ssl_cafile=str(pem))
    with pytest.raises(ServiceError, match=r"local broker listens with PLAINTEXT only.*KAFKA_BOOTSTRAP_SERVERS"):
        KafkaServer(s).start()
    assert not (tmp_path / "services").exists()  # refused before anything was written


def test_services_status_and_up_print_no_password(tmp_path):
    from typer.testing import CliRunner

    from rental.servers.cli import app
    from rental.settings import get_settings

    url = f"redis://app:{quote(PASSWORD, safe='')}@127.0.0.1:1/0"  # nothing listens on port 1
    env = {"REDIS_URL": url, "RENTAL_DATA_DIR": str(tmp_path), "RENTAL_KAFKA_SASL_PASSWORD": "kafka-secret",
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # fmt: skip
    outputs = []
    for args in (["status", "redis"], ["up", "redis"], ["status", "kafka"]):
        get_settings.cache_clear()
        try:
            outputs.append(CliRunner().invoke(app, args, env=env, terminal_width=200))
        finally:
            get_settings.cache_clear()
    status, up, kafka = outputs
    assert status.exit_code == 0 and "unreachable" in status.output and "redis://app:***@127.0.0.1" in status.output
    assert up.exit_code == 1 and "no Redis answers at redis://app:***@127.0.0.1:1/0" in up.output
    assert kafka.exit_code == 1 and "RENTAL_KAFKA_SASL_PASSWORD set, but" in kafka.output  # refused, named
    for result in outputs:
        assert PASSWORD not in result.output and quote(PASSWORD, safe="") not in result.output
        assert "kafka-secret" not in result.output
