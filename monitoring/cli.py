"""`rental monitor`: the prediction log and what is built on it."""

from __future__ import annotations

import logging
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from rental.settings import get_settings

app = typer.Typer(help="Monitoring: the prediction log, its checks and reports.", no_args_is_help=True)
console = Console(stderr=True)


class ProgressLine:
    """One live line: what has been logged, how fast, and how far event time has got."""

    def __init__(self):
        self.live = Live("", console=console, refresh_per_second=2)
        self.started = time.monotonic()
        self.shown_at = 0.0

    def __call__(self, monitor) -> None:
        now = time.monotonic()
        if now - self.shown_at < 0.5:
            return
        self.shown_at = now
        if not self.live.is_started:
            self.live.start()
        c, j = monitor.counters, monitor.ledger.counters
        quotes = c["records_quotes"]
        rate = quotes / max(now - self.started, 1e-9)
        watermark = monitor.watermark.isoformat(timespec="seconds") if monitor.watermark else "-"
        self.live.update(
            f"[bold]monitor[/bold] quotes {j['quotes']:,} ({rate:,.0f}/s) · duplicates {j['quotes_duplicate']:,} · "
            f"open {monitor.open_quotes:,} · outcomes {j['outcomes']:,} · bookings {j['bookings']:,} "
            f"(late {j['bookings_late']:,}) · rejected {c['rejected']:,} · watermark {watermark} · "
            f"checkpoint #{monitor.seq}"
        )

    def stop(self) -> None:
        if self.live.is_started:
            self.live.stop()


@app.command()
def run(
    quiet: Annotated[bool, typer.Option(help="No live progress line.")] = False,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    until_idle: Annotated[float | None, typer.Option(help="Stop once caught up and quiet this long.")] = None,
) -> None:
    """Log every quote on `predictions` once and join it with its outcome on `bookings`
    (SIGTERM checkpoints and stops)."""
    from monitoring.log.consumer import Monitor, MonitorRefused

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # its connection chatter, not the monitor's news
    settings = get_settings()
    try:
        monitor = Monitor(settings)
    except MonitorRefused as exc:
        console.print(f"[red]monitor not started: {exc}[/red]")
        raise typer.Exit(2) from None
    progress = None if quiet else ProgressLine()
    try:
        monitor.run(max_seconds, until_idle, on_poll=progress)
    finally:
        if progress:
            progress.stop()
    c = monitor.counters
    console.print(f"monitor stopped at checkpoint #{monitor.seq}: {c['quotes_logged']:,} quotes and "
                  f"{c['outcomes_logged']:,} outcomes logged, {c['rejected']:,} rejected, "
                  f"in {settings.monitor_log_dir}")  # fmt: skip


from monitoring.checks.commands import register as _register_checks  # noqa: E402  (check, status, ui)

_register_checks(app)
