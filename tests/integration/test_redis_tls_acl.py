"""Redis over TLS with an ACL user, through redis-py and Feast alike.

A redis-server of the test's own (Debian's, on a free port in a temporary directory) listens
only on TLS, asks clients for a certificate signed by the test's CA, has the default user
disabled and one ACL user whose password needs URL-encoding. The stream's OnlineWriter writes
features, Feast's get_online_features and the service's online reader read them back, and
``rental services status`` reports it reachable with the password masked.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from urllib.parse import quote

import pyarrow as pa
import pytest
import redis as redis_py
from typer.testing import CliRunner

from rental.connections import redis_client
from rental.servers import ServiceError
from rental.servers.cli import app as services_app
from rental.servers.redis import RedisServer, binary, ping
from rental.settings import Settings, get_settings
from streaming.feature_store.online_write import OnlineWriter
from streaming.feature_store.store import apply, feature_store
from tests.worlds.certificates import CertificateAuthority
from tests.worlds.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

USER = "pricing"
PASSWORD = "p@ss:w/rd,%40#?=é1"  # @ : / , % # ? = and a non-ASCII letter: all must be URL-encoded
DAY_US = 86_400 * 1_000_000


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """(settings for the ACL user over TLS, its port); the server is stopped afterwards."""
    if binary() is None:
        pytest.skip("redis-server is not installed")
    root = tmp_path_factory.mktemp("redis-tls")
    ca = CertificateAuthority(root / "tls")
    server, client = ca.issue("redis-server", server=True), ca.issue("redis-client", server=False)
    port = free_port()
    (root / "redis.conf").write_text(
        f"""bind 127.0.0.1
port 0
tls-port {port}
tls-cert-file {server.cert}
tls-key-file {server.key}
tls-ca-cert-file {ca.cert}
tls-auth-clients yes
dir {root}
save ""
appendonly no
user default off
user {USER} on >{PASSWORD} ~* &* +@all
"""
    )
    process = subprocess.Popen(
        [binary(), str(root / "redis.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    settings = Settings(
        data_dir=root / "data",
        REDIS_URL=f"rediss://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0",
        redis_ssl_ca_file=ca.cert,
        redis_ssl_certfile=client.cert,
        redis_ssl_keyfile=client.key,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ping(settings.redis_url, timeout_s=1, settings=settings)
                break
            except ServiceError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield settings
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)


def _rows(at_us: int, bookings: int, items: int) -> pa.Table:
    return pa.Table.from_pylist([{"item_id": f"item_{i}", "event_timestamp": at_us, "bookings_7d": bookings + i,
            "bookings_30d": bookings + i, "revenue_7d": 10.0 * bookings, "revenue_30d": 10.0 * bookings,
            "avg_price_30d": 10.0, "utilisation_30d": 0.1, "cancellations_30d": 0, "last_booking_at": at_us}
            for i in range(items)])  # fmt: skip


def test_the_stream_writes_and_feast_reads_over_tls_as_the_acl_user(tls_redis):
    apply(tls_redis)  # Feast's own client sets up the online store over the same connection
    store = feature_store(tls_redis)
    writer = OnlineWriter(store, tls_redis)
    writer.write("item_popularity", _rows(1000 * DAY_US, 3, 20))
    writer.close()
    read = store.get_online_features(
        features=["item_popularity:bookings_7d", "item_popularity:avg_price_30d"],
        entity_rows=[{"item_id": f"item_{i}"} for i in range(20)],
    ).to_dict()
    assert read["bookings_7d"] == [3 + i for i in range(20)] and read["avg_price_30d"] == [10.0] * 20
    with redis_client(tls_redis) as client:  # the rows are Redis's: written by the ACL user, over TLS
        assert client.acl_whoami() == USER and client.dbsize() == 20
        assert client.connection_pool.connection_class is redis_py.SSLConnection


def test_the_service_reads_features_over_tls(tls_redis):
    from bento_service.online_features import OnlineFeatures

    apply(tls_redis)
    features = OnlineFeatures(tls_redis)
    assert features.ping() is True
    assert features.redis.acl_whoami() == USER


def test_without_the_password_or_the_client_certificate_redis_refuses(tls_redis):
    wrong = tls_redis.redis_url.replace(quote(PASSWORD, safe=""), "wrong")
    with pytest.raises(
        ServiceError, match=r"no Redis answers at rediss://pricing:\*\*\*@127\.0\.0\.1.*(WRONGPASS|invalid)"
    ):
        ping(wrong, timeout_s=2, settings=tls_redis)
    anonymous = tls_redis.redis_url.replace(f"{USER}:{quote(PASSWORD, safe='')}@", "")
    with pytest.raises(ServiceError, match=r"NOAUTH|Authentication required"):
        ping(anonymous, timeout_s=2, settings=tls_redis)
    no_client_cert = tls_redis.model_copy(update={"redis_ssl_certfile": None, "redis_ssl_keyfile": None})
    with pytest.raises(ServiceError) as refused:
        ping(tls_redis.redis_url, timeout_s=2, settings=no_client_cert)
    assert PASSWORD not in str(refused.value) and quote(PASSWORD, safe="") not in str(refused.value)


def _services(args: list[str], env: dict[str, str]):
    """``rental services ...`` as a user runs it, on the settings ``env`` makes."""
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(services_app, args, env=env, terminal_width=200)
    finally:
        get_settings.cache_clear()


def test_services_status_reports_it_reachable_with_the_password_masked(tls_redis):
    assert RedisServer(tls_redis).status().state == "reachable"
    env = {
        "REDIS_URL": tls_redis.redis_url,
        "RENTAL_REDIS_SSL_CA_FILE": str(tls_redis.redis_ssl_ca_file),
        "RENTAL_REDIS_SSL_CERTFILE": str(tls_redis.redis_ssl_certfile),
        "RENTAL_REDIS_SSL_KEYFILE": str(tls_redis.redis_ssl_keyfile),
        "RENTAL_DATA_DIR": str(tls_redis.data_dir),
    }
    shown = _services(["status", "redis"], env)
    wrong = _services(["up", "redis"], env | {"REDIS_URL": tls_redis.redis_url.replace("@", "x@", 1)})
    assert shown.exit_code == 0, shown.output
    assert "reachable" in shown.output and f"rediss://{USER}:***@127.0.0.1" in shown.output
    assert wrong.exit_code == 1 and "rediss://pricing:***@127.0.0.1" in wrong.output
    for output in (shown.output, wrong.output):
        assert quote(PASSWORD, safe="") not in output and PASSWORD not in output
