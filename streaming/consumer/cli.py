"""`rental stream features`: run feature consumer stages until stopped, idle, or out of time."""

from __future__ import annotations

import json
import resource
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rental.settings import Settings, get_settings
from streaming.consumer.dead_letters import DeadLetters
from streaming.consumer.runner import StageRunner
from streaming.consumer.stages import stages as all_stages
from streaming.features.pipeline import Catalogue
from streaming.tables import ITEMS, history_paths, read_table, validate

app = typer.Typer(help="Live consumers of the booking stream.", no_args_is_help=True)
console = Console(stderr=True)


def load_catalogue(settings: Settings) -> Catalogue:
    path = history_paths(settings.history_dir)[0]
    if not path.exists():
        raise typer.BadParameter(f"no catalogue at {path}: run `rental simulate history` or `rental history load`")
    items, problems = validate(read_table(path), ITEMS, path.name)
    problems.raise_if_any()
    return Catalogue.from_items(items)


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


class Stop:
    """SIGTERM or Ctrl-C: finish the poll, checkpoint, commit, exit."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_):
        self.requested = True


def run(settings: Settings, stage_names: list[str], max_seconds: float | None, until_idle: float | None,
        show: bool = True, stats: dict | None = None) -> list[StageRunner]:  # fmt: skip
    from kafka import KafkaProducer

    from streaming.features.online import OnlineWriter
    from streaming.features.store import feature_store

    defined = all_stages(settings)
    unknown = [s for s in stage_names if s not in defined]
    if unknown:
        raise typer.BadParameter(f"unknown stage(s) {unknown}; known: {list(defined)}")
    catalogue = load_catalogue(settings)
    writer = OnlineWriter(feature_store(settings), settings)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5,
                             compression_type="lz4", client_id="features-forward")  # fmt: skip
    dead_letters = DeadLetters(producer, settings.topic_bookings_dlq)
    # One process polls its stages in turn: share the poll wait between them, so none waits long.
    timeout_ms = max(10, settings.stream_poll_timeout_ms // len(stage_names))
    runners = [StageRunner(defined[name], settings, catalogue, writer, producer, dead_letters, timeout_ms)
               for name in stage_names]  # fmt: skip
    stop, started, last_busy = Stop(), time.monotonic(), time.monotonic()
    first_record = None
    live = Live(_status(runners, started), console=console, refresh_per_second=2) if show else None
    if live:
        live.start()
    try:
        while not stop.requested:
            busy = sum(r.poll_once() for r in runners)
            now = time.monotonic()
            if busy and first_record is None:
                first_record = now
            if busy or any(r.lag() for r in runners) or not all(r.parts for r in runners):
                last_busy = now
            if live:
                live.update(_status(runners, started))
            if max_seconds is not None and now - started >= max_seconds:
                break
            if until_idle is not None and now - last_busy >= until_idle:
                break
    finally:
        closing = time.monotonic()
        for r in runners:
            r.close()
        producer.close()
        if stats is not None and first_record is not None:
            # Busy time: first record to the last poll that had work, plus the final checkpoint.
            stats["busy_s"] = (last_busy - first_record) + (time.monotonic() - closing)
        if live:
            live.update(_status(runners, started))
            live.stop()
    return runners


@app.command()
def features(
    stages: Annotated[
        str, typer.Option(help="Comma-separated: items, customers, categories.")
    ] = "items,customers,categories",
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    until_idle: Annotated[float | None, typer.Option(help="Stop once nothing arrived for this many seconds.")] = None,
    quiet: Annotated[bool, typer.Option(help="No live status table.")] = False,
    stats_json: Annotated[Path | None, typer.Option(help="Write counters and busy time here (benchmarks).")] = None,
) -> None:
    """Turn booking events into features in Redis and Parquet (SIGTERM stops it cleanly)."""
    stats: dict = {}
    names = [s.strip() for s in stages.split(",") if s.strip()]
    runners = run(get_settings(), names, max_seconds, until_idle, not quiet, stats)
    if stats_json:
        stats |= {
            "events": {r.stage.name: r.counters.events for r in runners},
            "duplicates": sum(r.counters.duplicates for r in runners),
            "dead_letters": runners[0].dead_letters.count if runners else 0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        stats_json.write_text(json.dumps(stats))
    events = sum(r.counters.events for r in runners)
    letters = runners[0].dead_letters if runners else None
    console.print(f"processed {events:,} events; {letters.count if letters else 0:,} sent to the DLQ"
                  + (f" ({letters.reasons})" if letters and letters.count else ""))  # fmt: skip
