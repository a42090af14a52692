"""The pricing service as a local server: `rental serve` in the foreground, or started in the
background (``start``) for the demo and the tests, ready only once ``/readyz`` says it can quote."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer

from rental.servers.lifecycle import ServiceError
from rental.settings import REPO_ROOT, get_settings

BENTO = "bento_service.service:PricingService"


def serve(
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Serve quotes over HTTP and gRPC (ports from RENTAL_SERVE_HTTP_PORT / RENTAL_SERVE_GRPC_PORT)."""
    settings = get_settings()
    typer.echo(f"HTTP on :{settings.serve_http_port} (OpenAPI at /docs), gRPC on :{settings.serve_grpc_port}; "
               f"model {settings.registered_model_name}@{settings.serving_alias}", err=True)  # fmt: skip
    command = [sys.executable, "-m", "bentoml", "serve", BENTO]
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, command + (["--reload"] if reload else []))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    process: subprocess.Popen
    http: str
    grpc_address: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text()


def start(env: dict[str, str], log: Path, timeout_s: float = 180.0) -> Served:
    """`bentoml serve` as an operator runs it, waiting until /readyz says it can quote."""
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENTAL_")} | env | {
        "RENTAL_SERVE_HTTP_PORT": str(http_port), "RENTAL_SERVE_GRPC_PORT": str(grpc_port),
        "RENTAL_SERVE_HOST": "127.0.0.1",
    }  # fmt: skip
    out = open(log, "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", BENTO],
        cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    served = Served(process, f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"bentoml serve exited with {process.returncode}:\n{served.logs()[-4000:]}")
        try:
            if httpx.get(f"{served.http}/readyz", timeout=2).status_code == 200:
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
