"""The served Bento with API tokens, TLS and mutual TLS on both protocols, as an operator runs it
(one `bentoml serve` for all of it); and the refusals to start that need no service at all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bento_service.auth import UNAUTHENTICATED
from bento_service.protos import pricing_pb2, pricing_pb2_grpc
from rental.servers.pricing import BENTO, ClientTLS, Served, free_port, start, stop
from rental.settings import REPO_ROOT
from tests.worlds.certificates import CertificateAuthority

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
TOKENS = ("rotating-old-Zr8q2", "rotating-new-Kp5w9")
START = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca, stranger = CertificateAuthority(root / "ca"), CertificateAuthority(root / "stranger", "stranger CA")
    return {"ca": ca, "server": ca.issue("server", server=True), "client": ca.issue("client", server=False),
            "stranger": stranger.issue("stranger-client", server=False)}  # fmt: skip


@pytest.fixture(scope="module")
def secured(world, pki, tmp_path_factory) -> Served:
    env = world.env | {
        "RENTAL_SERVE_WORKERS": "1",
        "RENTAL_SERVE_API_TOKENS": ",".join(TOKENS),
        "RENTAL_SERVE_TLS_CERTFILE": str(pki["server"].cert), "RENTAL_SERVE_TLS_KEYFILE": str(pki["server"].key),
        "RENTAL_SERVE_TLS_CLIENT_CA": str(pki["ca"].cert), "RENTAL_SERVE_TLS_SERVER_CA": str(pki["ca"].cert),
        "RENTAL_SERVE_CLIENT_CERTFILE": str(pki["client"].cert), "RENTAL_SERVE_CLIENT_KEYFILE": str(pki["client"].key),
    }  # fmt: skip
    bento = start(env, tmp_path_factory.mktemp("secured") / "serve.log")
    yield bento
    stop(bento)


def request(world) -> dict:
    return {"item_id": world.items[0], "customer_id": world.customers[0], "rental_start": START, "rental_days": 3}


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_the_project_clients_speak_tls_with_the_first_token(secured):
    assert secured.http.startswith("https://") and secured.token == TOKENS[0]
    assert secured.tls.cert is not None


def test_clients_without_a_certificate_from_the_ca_are_refused_on_both_protocols(world, secured, pki):
    ca = pki["ca"].cert
    stranger = ClientTLS(ca, pki["stranger"].cert, pki["stranger"].key)
    for tls in (ClientTLS(ca), stranger):
        client = httpx.Client(base_url=secured.http, verify=tls.ssl_context(), headers=secured.headers)
        with client, pytest.raises(httpx.TransportError):  # the handshake fails: no HTTP answer at all
            client.post("/predict", json=request(world))
        with grpc.secure_channel(secured.grpc_address, tls.grpc_credentials()) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                pricing_pb2_grpc.PricingServiceStub(channel).Predict(
                    pricing_pb2.PredictRequest(**request(world)), metadata=secured.metadata, timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # plaintext to a TLS port gets nothing either
    with pytest.raises(httpx.TransportError):
        httpx.post(secured.http.replace("https", "http") + "/predict", json=request(world), timeout=5)


def test_a_client_certificate_without_a_valid_token_is_unauthenticated(world, secured):
    sent = request(world)
    with secured.http_client(timeout=10) as client:
        for headers in ({"authorization": ""}, {"authorization": "Bearer wrong-token-Xy"},
                        {"authorization": f"Basic {TOKENS[0]}"}):  # fmt: skip
            for method, path, body in [("POST", "/predict", sent), ("POST", "/predict_batch", {"items": [sent]}),
                                       ("GET", "/health", None), ("GET", "/metrics", None)]:  # fmt: skip
                answer = client.request(method, path, json=body, headers=headers)
                assert answer.status_code == 401, (path, answer.text)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert answer.json() == {"error": UNAUTHENTICATED, "fields": []}
        invalid = client.post("/predict", json={"item_id": ""}, headers={"authorization": "Bearer nope"})
        assert invalid.status_code == 401  # before validation: strangers learn nothing of the fields

    with secured.grpc_channel() as channel:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        for metadata in [(), _bearer("wrong-token-Xy"), (("authorization", TOKENS[0]),)]:
            for call in (lambda m: stub.Predict(pricing_pb2.PredictRequest(**sent), metadata=m),
                         lambda m: stub.PredictBatch(pricing_pb2.PredictBatchRequest(
                             items=[pricing_pb2.PredictRequest(**sent)]), metadata=m)):  # fmt: skip
                with pytest.raises(grpc.RpcError) as refused:
                    call(metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert refused.value.details() == UNAUTHENTICATED
    logs = secured.logs()
    assert "wrong-token-Xy" not in logs and not any(t in logs for t in TOKENS)


def test_each_token_gets_the_same_quote_on_both_protocols(world, secured):
    sent = request(world)
    prices = []
    with secured.http_client(timeout=10) as client, secured.grpc_channel() as channel:
        stub = pricing_pb2_grpc.PricingServiceStub(channel)
        for token in TOKENS:
            answer = client.post("/predict", json=sent, headers={"authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            over_grpc = stub.Predict(pricing_pb2.PredictRequest(**sent), metadata=_bearer(token))
            prices += [answer.json()["price_per_day"], over_grpc.price_per_day]
            batch = stub.PredictBatch(pricing_pb2.PredictBatchRequest(items=[pricing_pb2.PredictRequest(**sent)]),
                                      metadata=_bearer(token))  # fmt: skip
            prices.append(batch.quotes[0].price_per_day)
        health = client.get("/health", headers={"authorization": f"Bearer {TOKENS[1]}"})
    assert len(set(prices)) == 1 and prices[0] > 0, prices
    assert health.status_code == 200 and health.json()["model_version"] == world.champion


def test_probes_and_the_schema_need_no_token(secured):
    with secured.http_client(timeout=10) as client:  # a client certificate, no token
        client.headers.pop("authorization")
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 200
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "one of RENTAL_SERVE_API_TOKENS"
    }  # fmt: skip
    for path in ("/predict", "/predict_batch", "/health"):
        operation = next(iter(schema["paths"][path].values()))
        assert operation["security"] == [{"bearer": []}] and "401" in operation["responses"], path

    with secured.grpc_channel() as channel:
        checked = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        listed = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for answer in listed for s in answer.list_services_response.service}
    assert "rental.pricing.v1.PricingService" in names


def _serve(command: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RENTAL_")}
    return subprocess.run(command, cwd=REPO_ROOT, env=clean | env, capture_output=True, text=True, timeout=120)


def test_a_public_address_without_tokens_refuses_to_start():
    """``bentoml serve`` as the container runs it, and ``rental serve``: both stop before a worker
    starts, naming both ways out."""
    bentoml = _serve([sys.executable, "-m", "bentoml", "serve", BENTO], RENTAL_SERVE_HOST="0.0.0.0",
                     RENTAL_SERVE_HTTP_PORT="1", RENTAL_SERVE_GRPC_PORT="1")  # fmt: skip
    cli = _serve([sys.executable, "-c", "from rental.cli import app; app()", "serve"], RENTAL_SERVE_HOST="0.0.0.0")
    for done in (bentoml, cli):
        assert done.returncode != 0
        said = done.stdout + done.stderr
        assert "refusing to serve on 0.0.0.0 without API tokens" in said, said[-3000:]
        assert "RENTAL_SERVE_API_TOKENS" in said and "RENTAL_SERVE_ALLOW_UNAUTHENTICATED" in said
    assert cli.returncode == 2 and "Traceback" not in cli.stderr


def test_a_certificate_without_its_key_refuses_to_start(pki):
    done = _serve([sys.executable, "-c", "from rental.cli import app; app()", "serve"],
                  RENTAL_SERVE_TLS_CERTFILE=str(pki["server"].cert))  # fmt: skip
    assert done.returncode == 2
    assert "RENTAL_SERVE_TLS_CERTFILE is set without RENTAL_SERVE_TLS_KEYFILE" in done.stderr


def test_a_public_address_allowed_unauthenticated_starts_and_says_so(tmp_path):
    """The explicit way out starts the server (no world is needed to see that) with a warning
    in the log before BentoML says it is listening."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTAL_")} | {
        "RENTAL_SERVE_HOST": "0.0.0.0", "RENTAL_SERVE_ALLOW_UNAUTHENTICATED": "true", "RENTAL_SERVE_WORKERS": "1",
        "RENTAL_SERVE_HTTP_PORT": str(free_port()), "RENTAL_SERVE_GRPC_PORT": str(free_port()),
        "RENTAL_DATA_DIR": str(tmp_path),
    }  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", BENTO], cwd=REPO_ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    said = []
    try:
        for line in process.stdout:
            said.append(line)
            if "Starting production" in line:
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    log = "".join(said)
    assert "Starting production HTTP BentoServer" in log, log[-3000:]
    assert "serving on 0.0.0.0 WITHOUT authentication" in log.split("Starting production")[0], log[-3000:]
