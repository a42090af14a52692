"""`rental stream features`: run feature consumer stages until stopped, idle, or out of time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rental.settings import get_settings
from streaming.consumer.errors import StartRefused
from streaming.consumer.runner import StageRunner
from streaming.consumer.runtime import run_one
from streaming.consumer.supervisor import supervise

app = typer.Typer(help="Live consumers of the booking stream.", no_args_is_help=True)
console = Console(stderr=True)


def _status(runners: list[StageRunner], started: float) -> Table:
    elapsed = max(time.monotonic() - started, 1e-9)
    table = Table(title="feature consumer")
    for column in (
        "stage",
        "partitions",
        "events",
        "events/s",
        "lag",
        "duplicates",
        "dead letters",
        "rows→Redis",
        "checkpoints",
    ):
        table.add_column(column, justify="right")
    for r in runners:
        c = r.counters
        table.add_row(r.stage.name, str(len(r.parts)), f"{c.events:,}", f"{c.events / elapsed:,.0f}", f"{r.lag():,}",
                      f"{c.duplicates:,}", f"{r.dead_letters.count:,}", f"{c.rows_online:,}", str(c.checkpoints))  # fmt: skip
    return table


class StatusTable:
    """The stage's counters as a live table, refreshed after every poll."""

    def __init__(self):
        self.live: Live | None = None
        self.started = time.monotonic()

    def update(self, runner: StageRunner) -> None:
        if self.live is None:
            self.started = time.monotonic()
            self.live = Live(_status([runner], self.started), console=console, refresh_per_second=2)
            self.live.start()
        else:
            self.live.update(_status([runner], self.started))

    def stop(self, runner: StageRunner) -> None:
        if self.live is not None:
            self.live.update(_status([runner], self.started))
            self.live.stop()


@app.command()
def features(
    stages: Annotated[
        str, typer.Option(help="Comma-separated: items, customers, categories (one process each).")
    ] = "items,customers,categories",
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    until_idle: Annotated[
        float | None, typer.Option(help="Stop once every stage has caught up and stayed so this long.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No live status table.")] = False,
    stats_json: Annotated[Path | None, typer.Option(help="Write counters and busy time here (benchmarks).")] = None,
) -> None:
    """Turn booking events into features in Redis and Parquet (SIGTERM stops it cleanly).

    Several stages run as one process each under a small supervisor (the stages share nothing
    but Kafka, and two cores serve two processes better than one)."""
    names = [s.strip() for s in stages.split(",") if s.strip()]
    settings = get_settings()
    if len(names) > 1:
        raise typer.Exit(supervise(settings, names, max_seconds, until_idle, not quiet, stats_json))
    try:
        run_one(settings, names[0], max_seconds, until_idle, stats_json, display=None if quiet else StatusTable())
    except StartRefused as exc:
        console.print(f"[red]{names[0]}: not started: {exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def reset(
    stage: Annotated[
        list[str] | None, typer.Option(help="A stage to reset (repeat for several; default: all three).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Start stages over from the backfill: delete their consumer groups' offsets and saved state.

    For a stage that refuses to start because its state is not where its offsets say it should
    be; the stages must be stopped."""
    from streaming.consumer.reset import ResetRefused, reset_stages

    settings = get_settings()
    which = ", ".join(stage) if stage else "all stages"
    if not yes and not typer.confirm(f"Forget the offsets and state of {which} in {settings.state_dir}?"):
        raise typer.Exit(1)
    try:
        groups = reset_stages(settings, stage or None)
    except (ResetRefused, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"reset {', '.join(groups)}: they start from the backfill in {settings.state_dir}")
