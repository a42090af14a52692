"""Who may ask for a quote, and over what: API tokens and TLS, for HTTP and gRPC alike.

Tokens come from ``RENTAL_SERVE_API_TOKENS``, several at once so a key can rotate (add the new
one, move the clients, drop the old). Configured tokens mean every quote needs one, wherever the
service is bound. Without tokens the service serves loopback only, unless
``RENTAL_SERVE_ALLOW_UNAUTHENTICATED`` says anyone who can reach it may quote, and then it says
so in the log. A bad TLS setting (a certificate without its key, a missing or unreadable file)
stops the start with the setting's name rather than failing in the first handshake.

Probes stay open: HTTP ``/livez`` and ``/readyz``, gRPC health and reflection, and the API's
schema (``/openapi.json``, ``/docs``). ``/health`` needs a token: it names the model version and
counts traffic, which is for operators, and probes have ``/readyz``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

from rental.settings import Settings

# The refusal both protocols give: it says what to send, never what was sent.
UNAUTHENTICATED = "a valid API token is required: send `authorization: Bearer <token>`"
OPEN_HTTP = frozenset({"/livez", "/readyz", "/docs", "/docs.json", "/openapi.json"})
OPEN_HTTP_PREFIXES = ("/static_content/",)  # BentoML's docs page assets
OPEN_GRPC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/")


class ServeConfigError(ValueError):
    """The service's security settings cannot be served as they are."""


class TokenCheck:
    """One check for both protocols: the value of an ``authorization`` header or metadata entry.

    Every configured token is compared, in constant time, whatever matched before, so the time
    an answer takes says nothing about how much of a guess was right or which key it hit.
    """

    def __init__(self, tokens: tuple[str, ...]):
        if not tokens:
            raise ValueError("a token check needs at least one token")
        self._tokens = tuple(t.encode() for t in tokens)

    def allows(self, authorization: str | bytes | None) -> bool:
        if not authorization:
            return False
        raw = authorization.encode() if isinstance(authorization, str) else authorization
        scheme, _, token = raw.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(known, token)
        return matched

    def __repr__(self) -> str:
        return f"TokenCheck({len(self._tokens)} tokens)"


def open_http_path(path: str) -> bool:
    return path in OPEN_HTTP or path.startswith(OPEN_HTTP_PREFIXES)


def open_grpc_method(method: str) -> bool:
    return method.startswith(OPEN_GRPC_PREFIXES)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


@dataclass(frozen=True)
class ServerTLS:
    certfile: Path
    keyfile: Path
    client_ca: Path | None  # mutual TLS when set

    def grpc_credentials(self):
        import grpc

        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.keyfile.read_bytes(), self.certfile.read_bytes())],
            root_certificates=ca, require_client_auth=ca is not None,
        )  # fmt: skip

    def bentoml_ssl(self) -> dict:
        """BentoML's ``ssl`` service config (uvicorn's TLS options)."""
        config = {"enabled": True, "certfile": str(self.certfile), "keyfile": str(self.keyfile)}
        if self.client_ca:
            config |= {"ca_certs": str(self.client_ca), "cert_reqs": int(ssl.CERT_REQUIRED)}
        return config


@dataclass(frozen=True)
class ServeSecurity:
    tokens: TokenCheck | None  # None: anyone who reaches the service may quote
    tls: ServerTLS | None
    warning: str | None  # to log at start: served unauthenticated beyond loopback


def _file(setting: str, path: Path) -> Path:
    if not path.is_file():
        raise ServeConfigError(f"RENTAL_{setting.upper()}: no such file {path}")
    return path


def server_tls(settings: Settings) -> ServerTLS | None:
    cert, key, ca = settings.serve_tls_certfile, settings.serve_tls_keyfile, settings.serve_tls_client_ca
    if cert is None and key is None:
        if ca is not None:
            raise ServeConfigError(
                "RENTAL_SERVE_TLS_CLIENT_CA (mutual TLS) needs TLS: set RENTAL_SERVE_TLS_CERTFILE and "
                "RENTAL_SERVE_TLS_KEYFILE too"
            )
        return None
    if cert is None or key is None:
        given, missing = ("CERTFILE", "KEYFILE") if key is None else ("KEYFILE", "CERTFILE")
        raise ServeConfigError(f"RENTAL_SERVE_TLS_{given} is set without RENTAL_SERVE_TLS_{missing}: TLS needs both")
    _file("serve_tls_certfile", cert), _file("serve_tls_keyfile", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        raise ServeConfigError(
            f"RENTAL_SERVE_TLS_CERTFILE {cert} and RENTAL_SERVE_TLS_KEYFILE {key} are not a PEM certificate "
            f"and its private key ({exc.__class__.__name__}: {exc})"
        ) from None
    if ca is not None:
        try:
            context.load_verify_locations(cafile=_file("serve_tls_client_ca", ca))
        except ssl.SSLError as exc:
            raise ServeConfigError(f"RENTAL_SERVE_TLS_CLIENT_CA {ca} is not a PEM CA certificate ({exc})") from None
    return ServerTLS(cert, key, ca)


def serve_security(settings: Settings) -> ServeSecurity:
    """What the service enforces, or ``ServeConfigError`` saying which setting to change."""
    tls = server_tls(settings)
    tokens = settings.api_tokens
    host = settings.serve_host
    warning = None
    if not tokens and not is_loopback(host):
        if not settings.serve_allow_unauthenticated:
            raise ServeConfigError(
                f"refusing to serve on {host} without API tokens: anyone who can reach it could quote. Set "
                "RENTAL_SERVE_API_TOKENS (comma-separated bearer tokens), or RENTAL_SERVE_ALLOW_UNAUTHENTICATED=true "
                "to serve without authentication, or RENTAL_SERVE_HOST=127.0.0.1"
            )
        warning = (
            f"serving on {host} WITHOUT authentication (RENTAL_SERVE_ALLOW_UNAUTHENTICATED=true): anyone who can "
            "reach this address can quote; set RENTAL_SERVE_API_TOKENS to require a token"
        )
    return ServeSecurity(TokenCheck(tokens) if tokens else None, tls, warning)


class BearerAuth:
    """ASGI middleware in front of the whole Bento, BentoML's own routes (``/metrics``) included:
    a request without a valid token is answered 401 before routing and body validation, so an
    unauthenticated caller learns nothing about the API beyond its published schema."""

    def __init__(self, app, check: TokenCheck):
        self.app, self.check = app, check

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or open_http_path(scope["path"]):
            return await self.app(scope, receive, send)
        sent = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        if self.check.allows(sent):
            return await self.app(scope, receive, send)
        # RFC 6750: a presented token that failed is an invalid_token; none at all is just a challenge.
        challenge = b'Bearer error="invalid_token"' if sent else b"Bearer"
        body = json.dumps({"error": UNAUTHENTICATED, "fields": []}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"www-authenticate", challenge)]  # fmt: skip
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
