"""`rental monitor check`, `status` and `ui`: registered on the `rental monitor` group."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from rental.settings import get_settings

console = Console(stderr=True)


def quiet_checks() -> None:
    """Keep a person's terminal for the windows: Evidently warns on an empty category's ratios
    (the report shows them as missing) and MLflow draws a bar for every reference it fetches."""
    import os
    import warnings

    warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def check(
    every: Annotated[float | None, typer.Option(help="Keep checking: seconds between runs.")] = None,
    serve_metrics: Annotated[bool, typer.Option(help="Serve Prometheus metrics on monitor_metrics_port.")] = False,
    no_dlq: Annotated[bool, typer.Option("--no-dlq", help="Do not ask Kafka for the dead-letter rate.")] = False,
) -> None:
    """Check the prediction log's closed windows not yet checked: reports, workspace, policy,
    retrain requests; then write the metrics file."""
    from monitoring.checks.run import run_checks

    quiet_checks()
    settings = get_settings()
    server = None
    if serve_metrics:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        registry.register(_Latest(settings))
        server = start_http_server(settings.monitor_metrics_port, addr=settings.monitor_metrics_host, registry=registry)
        console.print(f"metrics on http://{settings.monitor_metrics_host}:{settings.monitor_metrics_port}/metrics")
    while True:
        done = run_checks(settings, dlq=not no_dlq, on_window=lambda r: console.print(
            f"{r.window.label()}  model {r.model_version}  {r.status}  quotes {r.quotes:,}  booked {r.booked:,}"
            + (f"  failed: {', '.join(c.name for c in r.failed)}" if r.failed else "")))  # fmt: skip
        for request in done.requests:
            console.print(f"[bold red]retrain requested[/] ({', '.join(request['reasons'])}) "
                          f"key {request['idempotency_key']}; report: {request['windows'][-1]['report']}")  # fmt: skip
        for problem in done.problems:
            console.print(f"[yellow]{problem}[/yellow]")
        _write_metrics(settings)
        if every is None:
            break
        time.sleep(every)
    if server is not None:
        server[0].shutdown()
    if done.problems:
        raise typer.Exit(1)


class _Latest:
    """A Prometheus collector that reads the latest windows on every scrape."""

    def __init__(self, settings):
        self.settings = settings

    def collect(self):
        yield from _registry(self.settings).collect()


def _registry(settings):
    from monitoring.alerts.policy import PolicyState, state_path
    from monitoring.log import read_status
    from monitoring.views.metrics import registry_for
    from monitoring.views.store import latest_windows

    state = PolicyState.load(state_path(settings))
    status = read_status(settings) or {}
    newest = (status.get("newest") or {}).get("quotes")  # the log's newest quote (µs): how far behind it is
    newest_at = datetime.fromtimestamp(newest / 1e6, UTC) if newest else None
    return registry_for(latest_windows(settings, 1), len(state.sent), newest_at)


def _write_metrics(settings) -> None:
    from monitoring.views.metrics import write_textfile

    write_textfile(settings, _registry(settings))


def status(count: Annotated[int, typer.Option(help="How many windows.")] = 10) -> None:
    """The latest checked windows as a table, and the policy's state."""
    from rich.console import Console as Out

    from monitoring.alerts.policy import PolicyState, state_path
    from monitoring.views.store import latest_windows, status_table

    settings = get_settings()
    windows = latest_windows(settings, count)
    if not windows:
        console.print("no window checked yet: run `rental monitor check` once the log has closed windows")
        raise typer.Exit(0)
    out = Out()
    out.print(status_table(windows))
    state = PolicyState.load(state_path(settings))
    out.print(f"failing run: {len(state.run)} of {settings.monitor_failing_windows} windows · cool-down until "
              f"{state.cooldown_until or '-'} · requests sent {len(state.sent)} · waiting {len(state.outbox)}")  # fmt: skip
    latest = windows[-1]
    if latest.get("html"):
        out.print(f"latest report: {latest['html'][0]}")


def ui(host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1") -> None:
    """The Evidently UI over the monitoring workspace (offline, telemetry off)."""
    from monitoring.views.workspace import run_ui

    settings = get_settings()
    console.print(
        f"Evidently UI on http://{host}:{settings.monitor_ui_port} (workspace {settings.monitor_dir / 'workspace'})"
    )
    raise typer.Exit(run_ui(settings, host))


def register(app: typer.Typer) -> None:
    app.command()(check)
    app.command()(status)
    app.command()(ui)
