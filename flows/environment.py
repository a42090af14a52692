"""Prefect's environment: local, offline, its files under the data dir.

Prefect reads its settings when it is first imported, so ``configure`` runs before any
``import prefect`` in this package (``flows.cli`` and the flow modules call it first). Values
already in the environment win: a deployment can point at its own server.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from rental.settings import Settings


def flows_dir(settings: Settings) -> Path:
    """The flows' own files: Prefect's home (its SQLite database) and the retrain requests' ledger."""
    return settings.data_dir / "flows"


def server_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.flow_server_port}/api"


def offline_environment(settings: Settings) -> dict[str, str]:
    """No analytics, no promotions, no telemetry; Prefect's home under the data dir."""
    return {
        "PREFECT_HOME": str(flows_dir(settings) / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "DO_NOT_TRACK": "1",
        # The ephemeral server (no `rental flows server` running) migrates its SQLite database at
        # start: 20 s, Prefect's default, timed out on this 2-core machine under load.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }


def server_answers(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def configure(settings: Settings, use_local_server: bool = True, make_home: bool = True) -> dict[str, str]:
    """Set Prefect's environment unless already set; with ``use_local_server``, runs report to
    `rental flows server` when it answers (else Prefect starts its ephemeral server in-process)."""
    for name, value in offline_environment(settings).items():
        os.environ.setdefault(name, value)
    if make_home:
        Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    if use_local_server and "PREFECT_API_URL" not in os.environ and server_answers(server_url(settings)):
        os.environ["PREFECT_API_URL"] = server_url(settings)
    return {
        name: os.environ[name] for name in (*offline_environment(settings), "PREFECT_API_URL") if name in os.environ
    }
