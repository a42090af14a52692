"""The pricing service as a local server: `rental serve` in the foreground, or started in the
background (``start``) for the demo and the tests, ready only once ``/readyz`` says it can quote.

``Served`` also makes the project's own clients of it: with TLS settings they speak HTTPS and
gRPC over TLS (trusting ``RENTAL_SERVE_TLS_SERVER_CA``, or the service's certificate itself,
and showing ``RENTAL_SERVE_CLIENT_CERTFILE`` under mutual TLS), and with API tokens they send
the first one.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import grpc
import httpx
import typer

from bento_service.auth import ServeConfigError, serve_security
from rental.servers.lifecycle import ServiceError
from rental.settings import REPO_ROOT, Settings, get_settings

BENTO = "bento_service.service:PricingService"
CLIENT_SETTINGS = ("serve_api_tokens", "serve_tls_certfile", "serve_tls_keyfile", "serve_tls_client_ca",
                   "serve_tls_server_ca", "serve_client_certfile", "serve_client_keyfile")  # fmt: skip


def serve(
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Serve quotes over HTTP and gRPC (ports from RENTAL_SERVE_HTTP_PORT / RENTAL_SERVE_GRPC_PORT)."""
    settings = get_settings()
    try:
        security = serve_security(settings)
    except ServeConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    scheme = "HTTP" if security.tls is None else "HTTPS" if security.tls.client_ca is None else "HTTPS (mutual TLS)"
    auth = "API tokens required" if security.tokens else "no authentication"
    if security.warning:
        typer.echo(f"warning: {security.warning}", err=True)
    typer.echo(f"{scheme} on {settings.serve_host}:{settings.serve_http_port} (OpenAPI at /docs), gRPC on "
               f":{settings.serve_grpc_port}; {auth}; model {settings.registered_model_name}@{settings.serving_alias}",
               err=True)  # fmt: skip
    command = [sys.executable, "-m", "bentoml", "serve", BENTO]
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, command + (["--reload"] if reload else []))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ClientTLS:
    """How the project's own clients reach a service that speaks TLS."""

    trust: Path  # the CA that signed the service's certificate, or that (self-signed) certificate
    cert: Path | None = None  # shown under mutual TLS
    key: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.trust))
        if self.cert is not None:
            context.load_cert_chain(self.cert, self.key)
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        read = lambda path: path.read_bytes() if path is not None else None  # noqa: E731
        return grpc.ssl_channel_credentials(read(self.trust), read(self.key), read(self.cert))


def client_security(settings: Settings) -> tuple[ClientTLS | None, str | None]:
    """The TLS and the token (the first configured) a client of the service configured by
    ``settings`` needs."""
    tls = None
    if settings.serve_tls_certfile is not None:
        if settings.serve_tls_client_ca is not None and settings.serve_client_certfile is None:
            raise ServiceError(
                "the service asks for client certificates (RENTAL_SERVE_TLS_CLIENT_CA): set "
                "RENTAL_SERVE_CLIENT_CERTFILE and RENTAL_SERVE_CLIENT_KEYFILE to one it accepts"
            )
        trust = settings.serve_tls_server_ca or settings.serve_tls_certfile
        tls = ClientTLS(trust, settings.serve_client_certfile, settings.serve_client_keyfile)
    tokens = settings.api_tokens
    return tls, tokens[0] if tokens else None


@dataclass
class Served:
    process: subprocess.Popen
    http: str
    grpc_address: str
    log: Path
    tls: ClientTLS | None = None
    token: str | None = field(default=None, repr=False)

    def logs(self) -> str:
        return self.log.read_text()

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata: ``stub.Predict(request, metadata=served.metadata)``."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def http_client(self, **options) -> httpx.Client:
        verify = self.tls.ssl_context() if self.tls else True
        return httpx.Client(base_url=self.http, headers=self.headers, verify=verify, **options)

    def grpc_channel(self) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(self.grpc_address)
        return grpc.secure_channel(self.grpc_address, self.tls.grpc_credentials())


def _serve_settings(env: dict[str, str]) -> Settings:
    """The security settings of a service started with ``env`` at the repo root: its own values
    only, never this process's environment."""
    named = dict.fromkeys(CLIENT_SETTINGS)
    for key, value in env.items():
        name = key.removeprefix("RENTAL_").lower()
        if key.startswith("RENTAL_SERVE_") and name in named:
            named[name] = value if name == "serve_api_tokens" else str(REPO_ROOT / Path(value).expanduser())
    return Settings(**named)


def start(env: dict[str, str], log: Path, timeout_s: float = 180.0) -> Served:
    """`bentoml serve` as an operator runs it, waiting until /readyz says it can quote."""
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTAL_")} | env | {
        "RENTAL_SERVE_HTTP_PORT": str(http_port), "RENTAL_SERVE_GRPC_PORT": str(grpc_port),
        "RENTAL_SERVE_HOST": "127.0.0.1",
    }  # fmt: skip
    tls, token = client_security(_serve_settings(env))
    out = open(log, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", BENTO],
        cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    scheme = "https" if tls else "http"
    served = Served(process, f"{scheme}://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log, tls, token)
    deadline = time.monotonic() + timeout_s
    with served.http_client(timeout=2) as probe:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServiceError(f"bentoml serve exited with {process.returncode}:\n{served.logs()[-4000:]}")
            try:
                if probe.get("/readyz").status_code == 200:
                    return served
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    stop(served)
    raise ServiceError(f"bentoml serve was not ready after {timeout_s:.0f} s:\n{served.logs()[-4000:]}")


def stop(served: Served) -> None:
    if served.process.poll() is None:
        os.killpg(served.process.pid, signal.SIGTERM)
        try:
            served.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(served.process.pid, signal.SIGKILL)
            served.process.wait(timeout=10)
