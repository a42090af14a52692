"""`rental serve`: the pricing service in the foreground, as `make serve` runs it."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from rental.settings import REPO_ROOT, get_settings


def serve(
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Serve quotes over HTTP and gRPC (ports from RENTAL_SERVE_HTTP_PORT / RENTAL_SERVE_GRPC_PORT)."""
    settings = get_settings()
    typer.echo(f"HTTP on :{settings.serve_http_port} (OpenAPI at /docs), gRPC on :{settings.serve_grpc_port}; "
               f"model {settings.registered_model_name}@{settings.serving_alias}", err=True)  # fmt: skip
    command = [sys.executable, "-m", "bentoml", "serve", "bento_service.service:PricingService"]
    os.chdir(REPO_ROOT)
    os.execv(sys.executable, command + (["--reload"] if reload else []))
