"""`rental simulate ...`: write a history, stream live bookings, replay a history into Kafka."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from rental.progress import progress_bar
from rental.settings import get_settings
from streaming.events import describe_validation_error
from streaming.history.tables import history_paths, read_table, write_history
from streaming.simulator.shifts import Shifts
from streaming.simulator.world import SimulationConfig, World

app = typer.Typer(help="The rental app's stand-in: seeded history and live booking events.", no_args_is_help=True)
console = Console(stderr=True)


def _progress():
    return progress_bar(console)


def _config(
    seed, items, customers, days, bookings, end, inflation, trend_category, trend_factor, off_season, shift_start
):
    shifts = Shifts(
        start=shift_start.replace(tzinfo=UTC) if shift_start else None,
        inflation_annual=inflation,
        trend_category=trend_category,
        trend_factor=trend_factor,
        off_season_category=off_season,
    )
    return SimulationConfig(
        seed=seed, items=items, customers=customers, days=days, bookings=bookings,
        end=end.date() if end else datetime.now(UTC).date(), shifts=shifts,
    )  # fmt: skip


Seed = Annotated[int, typer.Option(help="Same seed and end date, same data.")]
Items = Annotated[int, typer.Option(help="Catalogue size (100,000 on request).")]
Customers = Annotated[int | None, typer.Option(help="Default: 4 per item.")]
Days = Annotated[int, typer.Option(help="Days of history.")]
Bookings = Annotated[int, typer.Option(help="About this many bookings in the history.")]
End = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="History ends here (default: today, UTC).")]
Inflation = Annotated[float, typer.Option(help="Shift: annual price inflation from --shift-start.")]
TrendCat = Annotated[str | None, typer.Option(help="Shift: category whose demand trends.")]
TrendFactor = Annotated[float, typer.Option(help="Shift: demand multiplier of --trend-category.")]
OffSeason = Annotated[str | None, typer.Option(help="Shift: category whose season moves by six months.")]
ShiftStart = Annotated[datetime | None, typer.Option(help="Shift: when the shifts begin (UTC).")]
OutDir = Annotated[Path | None, typer.Option(help="Default: <data dir>/simulation.")]


@app.command()
def history(
    seed: Seed = 42, items: Items = 2_000, customers: Customers = None, days: Days = 365, bookings: Bookings = 60_000,
    end: End = None, inflation: Inflation = 0.0, trend_category: TrendCat = None, trend_factor: TrendFactor = 1.0,
    off_season: OffSeason = None, shift_start: ShiftStart = None, out: OutDir = None,
) -> None:  # fmt: skip
    """Write catalogue, customers and booking history to Parquet."""
    from streaming.simulator.history import simulate

    try:
        cfg = _config(
            seed,
            items,
            customers,
            days,
            bookings,
            end,
            inflation,
            trend_category,
            trend_factor,
            off_season,
            shift_start,
        )
    except ValidationError as exc:
        console.print(f"[red]invalid options:[/red] {describe_validation_error(exc)}")
        raise typer.Exit(2) from None
    out = out or get_settings().simulation_dir
    with _progress() as progress:
        task = progress.add_task("simulating bookings (items)", total=cfg.items)
        result = simulate(cfg, progress=lambda n: progress.advance(task, n))
    paths = write_history(result, out)
    (out / "simulation.json").write_text(cfg.model_dump_json(indent=2))
    console.print(f"wrote {len(result.items):,} items, {len(result.customers):,} customers, "
                  f"{len(result.bookings):,} bookings ({cfg.start.date()} to {cfg.end}) to {paths['bookings'].parent}")  # fmt: skip


def load_world(directory: Path) -> tuple[World, object]:
    """The world that wrote ``directory``, rebuilt from its saved config, and its bookings."""
    config_file = directory / "simulation.json"
    if not config_file.exists():
        raise typer.BadParameter(f"{config_file} not found: run `rental simulate history` first")
    config = SimulationConfig.model_validate_json(config_file.read_text())
    return World(config), read_table(history_paths(directory)[2])


@app.command()
def stream(
    rate: Annotated[float, typer.Option(help="Bookings per second.")] = 100.0,
    duration: Annotated[float | None, typer.Option(help="Seconds to stream.")] = 10.0,
    count: Annotated[int | None, typer.Option(help="Stop after this many bookings.")] = None,
    history_dir: OutDir = None,
    topic: Annotated[str | None, typer.Option(help="Default: the bookings topic from settings.")] = None,
) -> None:
    """Stream live bookings (and their cancellations) to Kafka, continuing the history."""
    from streaming.producer import make_producer
    from streaming.simulator.live import LiveSimulator, stream_live

    settings = get_settings()
    world, bookings = load_world(history_dir or settings.simulation_dir)
    simulator = LiveSimulator(world, bookings)
    producer = make_producer(settings)
    total = count or int(rate * (duration or 0)) or None
    with _progress() as progress:
        task = progress.add_task(f"streaming bookings at {rate:g}/s", total=total)
        counts = stream_live(producer, topic or settings.topic_bookings, simulator, rate, duration, count,
                             on_sent=lambda n: progress.advance(task, n))  # fmt: skip
    producer.close()
    console.print(f"sent {counts['booking_created']:,} bookings and {counts['booking_cancelled']:,} cancellations "
                  f"to {topic or settings.topic_bookings}")  # fmt: skip


@app.command()
def replay(
    history_dir: OutDir = None,
    rate: Annotated[float | None, typer.Option(help="Events per second (default: as fast as possible).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N events.")] = None,
    topic: Annotated[str | None, typer.Option(help="Default: the bookings topic from settings.")] = None,
) -> None:
    """Send a written history to Kafka as the events the rental app would have sent."""
    import itertools

    from streaming.producer import make_producer, send_events
    from streaming.simulator.replay import cancelled_rows, history_events

    settings = get_settings()
    bookings = read_table(history_paths(history_dir or settings.simulation_dir)[2])
    total = len(bookings) + len(cancelled_rows(bookings))
    events = history_events(bookings)
    if limit:
        events, total = itertools.islice(events, limit), min(limit, total)
    producer = make_producer(settings)
    with _progress() as progress:
        task = progress.add_task("replaying history", total=total)
        sent = send_events(
            producer, topic or settings.topic_bookings, events, rate, lambda n: progress.advance(task, n)
        )
    producer.close()
    console.print(f"sent {sent:,} events to {topic or settings.topic_bookings}")
