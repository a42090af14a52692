"""`rental flows ...`: run a flow now, serve the schedules and the retrain requests' listener,
start a local Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from rental.settings import get_settings

app = typer.Typer(help="Prefect flows: retrain, materialize, compact, monitor; schedules and retrain requests.",
                  no_args_is_help=True)  # fmt: skip
console = Console()


class FlowName(StrEnum):
    retrain = "retrain"
    materialize = "materialize"
    compact = "compact"
    monitor = "monitor"


@app.command()
def run(name: Annotated[FlowName, typer.Argument(help="The flow to run now, in this process.")]) -> None:
    """Run one flow now (reported to `rental flows server` when it runs, else to an ephemeral one)."""
    from flows.environment import configure

    settings = get_settings()
    configure(settings)
    from importlib import import_module

    flow = getattr(import_module(f"flows.{name.value}"), name.value)
    state = flow(return_state=True)
    if not state.is_completed():
        console.print(f"[red]{name.value} ended {state.type.value}:[/red] {state.message}")
        raise typer.Exit(1)
    console.print_json(json.dumps(state.result(), default=str))


@app.command()
def serve(
    server: Annotated[bool, typer.Option(help="Start a local Prefect server first unless one answers.")] = False,
    requests: Annotated[bool, typer.Option(help="Also listen to retrain requests.")] = True,
) -> None:
    """The flows on their cron schedules and the retrain requests' listener, until Ctrl-C / SIGTERM."""
    from flows.environment import configure, server_answers, server_url

    settings = get_settings()
    child = None
    if server and not server_answers(server_url(settings)):
        child = _start_server(settings)
    env = configure(settings)
    console.print(f"Prefect API: {env.get('PREFECT_API_URL', 'ephemeral (in this process)')}; "
                  f"retrain {settings.flow_retrain_cron!r}, materialize {settings.flow_materialize_cron!r}, "
                  f"compact {settings.flow_compact_cron!r}, monitor {settings.flow_monitor_cron!r} (UTC); "
                  f"retrain requests from {settings.topic_retrain_requests!r}: {'on' if requests else 'off'}")  # fmt: skip
    from flows.schedules import serve as serve_flows

    _log_to_console()
    try:
        serve_flows(settings, listen_requests=requests)
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=30)


def _log_to_console() -> None:
    """The listener's outcomes (a request run, skipped, rejected) beside Prefect's own lines."""
    import logging

    logger = logging.getLogger("flows")
    logger.setLevel(logging.INFO)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False


@app.command("server")
def server_command() -> None:
    """`prefect server start` on 127.0.0.1:flow_server_port: SQLite under the data dir, offline, analytics off."""
    settings = get_settings()
    child = _start_server(settings, wait=False)
    try:
        raise typer.Exit(child.wait())
    except KeyboardInterrupt:
        child.terminate()
        raise typer.Exit(child.wait(timeout=30)) from None


def _start_server(settings, wait: bool = True) -> subprocess.Popen:
    from flows.environment import offline_environment, server_answers, server_url

    env = os.environ | offline_environment(settings)
    env.pop("PREFECT_API_URL", None)
    os.makedirs(env["PREFECT_HOME"], exist_ok=True)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
               "--port", str(settings.flow_server_port)]  # fmt: skip
    console.print(f"Prefect server on http://127.0.0.1:{settings.flow_server_port} (home {env['PREFECT_HOME']})")
    # A session of its own: Ctrl-C or SIGTERM to the group reaches the runner alone, which still
    # needs the server to pause its schedules; the server is stopped after it.
    child = subprocess.Popen(command, env=env, start_new_session=wait)
    if wait:
        deadline = time.monotonic() + 120
        while not server_answers(server_url(settings)):
            if child.poll() is not None or time.monotonic() > deadline:
                child.terminate()
                raise typer.Exit(f"the Prefect server did not start (exit {child.poll()})")
            time.sleep(0.5)
    return child
