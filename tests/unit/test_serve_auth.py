"""The service's token check and start-up policy (``bento_service.auth``), and the two places that
enforce it: the ASGI middleware on a small app and the interceptor on an in-process grpc.aio server."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from fastapi import FastAPI
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from bento_service.auth import UNAUTHENTICATED, BearerAuth, ServeConfigError, TokenCheck, is_loopback, serve_security
from bento_service.grpc_server import TokenInterceptor
from bento_service.protos import pricing_pb2, pricing_pb2_grpc
from rental.settings import Settings
from tests.worlds.certificates import CertificateAuthority

TOKENS = ("old-key-0123", "new-key-4567")


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer old-key-0123", True),
        ("Bearer new-key-4567", True),
        ("bearer  new-key-4567 ", True),  # the scheme is case-insensitive (RFC 7235)
        (b"Bearer new-key-4567", True),  # ASGI headers are bytes
        ("Bearer new-key-456", False),  # a prefix of a token
        ("Bearer new-key-45678", False),
        ("Bearer ", False),
        ("Bearer", False),
        ("Basic old-key-0123", False),
        ("old-key-0123", False),
        ("", False),
        (None, False),
    ],
)
def test_token_check(header, allowed):
    assert TokenCheck(TOKENS).allows(header) is allowed


def test_token_check_never_shows_its_tokens():
    check = TokenCheck(TOKENS)
    assert all(t not in repr(check) and t not in str(check) for t in TOKENS)
    with pytest.raises(ValueError):
        TokenCheck(())


def test_settings_give_the_tokens_trimmed():
    settings = Settings(serve_api_tokens=" old-key-0123 ,new-key-4567,, ")
    assert settings.api_tokens == TOKENS
    assert "old-key" not in repr(settings)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("10.1.2.3", False), ("pricing.internal", False)],
)  # fmt: skip
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_public_address_needs_tokens_or_an_explicit_setting():
    with pytest.raises(ServeConfigError) as refused:
        serve_security(Settings(serve_host="0.0.0.0"))
    assert "RENTAL_SERVE_API_TOKENS" in str(refused.value)
    assert "RENTAL_SERVE_ALLOW_UNAUTHENTICATED" in str(refused.value)

    allowed = serve_security(Settings(serve_host="0.0.0.0", serve_allow_unauthenticated=True))
    assert allowed.tokens is None and "WITHOUT authentication" in allowed.warning
    secured = serve_security(Settings(serve_host="0.0.0.0", serve_api_tokens=",".join(TOKENS)))
    assert secured.tokens is not None and secured.warning is None
    # tokens configured = tokens required, on loopback too; no tokens on loopback = open, no warning
    assert serve_security(Settings(serve_host="127.0.0.1", serve_api_tokens="k")).tokens is not None
    local = serve_security(Settings(serve_host="127.0.0.1"))
    assert local.tokens is None and local.warning is None and local.tls is None


def test_tls_settings_are_checked_at_start(tmp_path):
    ca = CertificateAuthority(tmp_path / "ca")
    server = ca.issue("server", server=True)
    other = ca.issue("other", server=True)

    def security(**fields):
        return serve_security(Settings(**fields))

    tls = security(serve_tls_certfile=server.cert, serve_tls_keyfile=server.key, serve_tls_client_ca=ca.cert).tls
    assert tls.client_ca == ca.cert and tls.bentoml_ssl()["cert_reqs"] == 2  # ssl.CERT_REQUIRED
    for fields, named in [
        ({"serve_tls_certfile": server.cert}, "without RENTAL_SERVE_TLS_KEYFILE"),
        ({"serve_tls_keyfile": server.key}, "without RENTAL_SERVE_TLS_CERTFILE"),
        ({"serve_tls_client_ca": ca.cert}, "RENTAL_SERVE_TLS_CLIENT_CA (mutual TLS) needs TLS"),
        ({"serve_tls_certfile": tmp_path / "gone.pem", "serve_tls_keyfile": server.key},
         "RENTAL_SERVE_TLS_CERTFILE: no such file"),
        ({"serve_tls_certfile": server.cert, "serve_tls_keyfile": other.key}, "not a PEM certificate and its"),
        ({"serve_tls_certfile": server.cert, "serve_tls_keyfile": server.key, "serve_tls_client_ca": server.key},
         "RENTAL_SERVE_TLS_CLIENT_CA"),
    ]:  # fmt: skip
        with pytest.raises(ServeConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
            security(**fields)


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: dict) -> dict:
        return {"echo": body}

    @app.get("/livez")
    async def livez() -> str:
        return "ok"

    return app


def test_http_middleware_answers_401_before_validation():
    app = BearerAuth(_app(), check=TokenCheck(TOKENS))

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            missing = await client.post("/predict", content=b"not json")
            wrong = await client.post("/predict", json={}, headers={"authorization": "Bearer nope-secret"})
            good = [await client.post("/predict", json={"a": 1}, headers={"authorization": f"Bearer {t}"})
                    for t in TOKENS]  # fmt: skip
            unknown = await client.get("/nowhere")
            probe = await client.get("/livez")
            return missing, wrong, good, unknown, probe

    missing, wrong, good, unknown, probe = asyncio.run(run())
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {"error": UNAUTHENTICATED, "fields": []}
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "nope-secret" not in wrong.text
    assert [r.status_code for r in good] == [200, 200] and good[0].json() == {"echo": {"a": 1}}
    assert unknown.status_code == 401  # no map of the API for strangers
    assert probe.status_code == 200


class Echo(pricing_pb2_grpc.PricingServiceServicer):
    async def Predict(self, request, context):  # the proto's method name
        return pricing_pb2.Quote(item_id=request.item_id, price_per_day=1.5)


def test_grpc_interceptor_refuses_calls_without_a_token_and_keeps_health_open():
    async def run():
        server = grpc.aio.server(interceptors=[TokenInterceptor(TokenCheck(TOKENS))])
        pricing_pb2_grpc.add_PricingServiceServicer_to_server(Echo(), server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        await health.set("", health_pb2.HealthCheckResponse.SERVING)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pricing_pb2_grpc.PricingServiceStub(channel)
                request = pricing_pb2.PredictRequest(item_id="item_1", rental_start="2030-01-01", rental_days=2)
                codes = []
                for metadata in [(), (("authorization", "Bearer nope-secret"),), (("authorization", "nope"),)]:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.Predict(request, metadata=metadata)
                    codes.append((refused.value.code(), refused.value.details()))
                quotes = [await stub.Predict(request, metadata=(("authorization", f"Bearer {t}"),)) for t in TOKENS]
                checked = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
                return codes, quotes, checked
        finally:
            await server.stop(0)

    codes, quotes, checked = asyncio.run(run())
    assert codes == [(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)] * 3
    assert [q.item_id for q in quotes] == ["item_1", "item_1"]
    assert checked.status == health_pb2.HealthCheckResponse.SERVING


def test_the_benchmarks_raw_grpc_client_sends_the_token_over_tls(tmp_path):
    from rental.servers.pricing import ClientTLS
    from tests.benchmarks.raw_clients import RawGrpc
    from tests.unit.test_raw_clients import PREDICT

    ca = CertificateAuthority(tmp_path)
    server_cert = ca.issue("server", server=True)
    # long enough that HPACK writes its length in more than one byte
    tokens = (TOKENS[0], "k" * 300)

    async def run():
        server = grpc.aio.server(interceptors=[TokenInterceptor(TokenCheck(tokens))])
        pricing_pb2_grpc.add_PricingServiceServicer_to_server(Echo(), server)
        credentials = grpc.ssl_server_credentials([(server_cert.key.read_bytes(), server_cert.cert.read_bytes())])
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        message = pricing_pb2.PredictRequest(item_id="item_9", rental_start="2030-01-01", rental_days=2)
        try:
            answers = []
            for token in (*tokens, None):
                raw = await asyncio.to_thread(RawGrpc, f"127.0.0.1:{port}", token, ClientTLS(ca.cert).ssl_context())
                try:
                    sent = await asyncio.to_thread(raw.send, raw.request(PREDICT, message.SerializeToString()))
                    answers.append(pricing_pb2.Quote.FromString(sent).item_id)
                except RuntimeError as exc:
                    answers.append(str(exc))
            return answers
        finally:
            await server.stop(0)

    first, long, none = asyncio.run(run())
    assert first == long == "item_9"
    assert "ended without one whole message" in none  # the refusal is a gRPC error, not a quote


def test_the_project_clients_follow_the_service_settings(tmp_path, monkeypatch):
    from rental.servers.lifecycle import ServiceError
    from rental.servers.pricing import Served, _serve_settings, client_security

    monkeypatch.setenv("RENTAL_SERVE_API_TOKENS", "from-this-process")  # never the started service's
    assert client_security(_serve_settings({})) == (None, None)
    plain = Served(None, "http://127.0.0.1:1", "127.0.0.1:2", tmp_path / "log")
    assert plain.headers == {} and plain.metadata == ()

    ca = CertificateAuthority(tmp_path / "ca")
    server, client = ca.issue("server", server=True), ca.issue("client", server=False)
    env = {"RENTAL_SERVE_API_TOKENS": ",".join(TOKENS), "RENTAL_SERVE_TLS_CERTFILE": str(server.cert),
           "RENTAL_SERVE_TLS_KEYFILE": str(server.key)}  # fmt: skip
    tls, token = client_security(_serve_settings(env))
    assert token == TOKENS[0] and tls.trust == server.cert and tls.cert is None
    mutual = env | {"RENTAL_SERVE_TLS_CLIENT_CA": str(ca.cert)}
    with pytest.raises(ServiceError, match="RENTAL_SERVE_CLIENT_CERTFILE"):
        client_security(_serve_settings(mutual))
    tls, _ = client_security(_serve_settings(mutual | {
        "RENTAL_SERVE_TLS_SERVER_CA": str(ca.cert), "RENTAL_SERVE_CLIENT_CERTFILE": str(client.cert),
        "RENTAL_SERVE_CLIENT_KEYFILE": str(client.key)}))  # fmt: skip
    assert (tls.trust, tls.cert, tls.key) == (ca.cert, client.cert, client.key)
    secured = Served(None, "https://127.0.0.1:1", "127.0.0.1:2", tmp_path / "log", tls, TOKENS[1])
    assert secured.headers == {"authorization": f"Bearer {TOKENS[1]}"}
    assert TOKENS[1] not in repr(secured)
