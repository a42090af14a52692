"""`rental catalogue ...` (list items on the live catalogue) and `rental dlq replay`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from rental.progress import progress_bar
from rental.settings import get_settings

app = typer.Typer(help="The live catalogue: items listed or changed while the stream runs.", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter topic: rejected bookings, and replaying them.", no_args_is_help=True)
console = Console(stderr=True)


def _topic_exists(settings) -> bool:
    from streaming.catalogue.follower import listing_consumer

    consumer = listing_consumer(settings, "rental-catalogue")
    try:
        return bool(consumer.partitions_for_topic(settings.topic_items))
    finally:
        consumer.close()


@app.command()
def publish(
    items: Annotated[
        Path | None, typer.Option(exists=True, help="An items table, CSV or Parquet (default: the history's).")
    ] = None,
) -> None:
    """List (or change) every item of a table on the items topic, as the rental app does: the
    stages and the pricing service know them without a restart."""
    from streaming.catalogue.listing import listings
    from streaming.catalogue.publish import publish as send
    from streaming.history.tables import ITEMS, TableError, history_paths, read_table, validate

    settings = get_settings()
    path = items or history_paths(settings.history_dir)[0]
    if not path.exists():
        raise typer.BadParameter(f"no items table at {path}: run `rental simulate history` or pass --items")
    frame, problems = validate(read_table(path), ITEMS, path.name, 1 if path.suffix.lower() in {".csv", ".gz"} else 0)
    try:
        problems.raise_if_any()
    except TableError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    rows = listings(frame)
    if not _topic_exists(settings):
        console.print(f"[red]no topic {settings.topic_items} on {settings.bootstrap_servers}: "
                      "`rental services up` creates it (compacted)[/red]")  # fmt: skip
        raise typer.Exit(1)
    with progress_bar(console) as bar:
        task = bar.add_task(f"listing items on {settings.topic_items}", total=len(rows))
        sent = send(settings, rows, on_sent=lambda n: bar.advance(task, n))
    console.print(f"{sent:,} items listed on {settings.topic_items} from {path}")


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Where to write the items table (Parquet).")],
) -> None:
    """Write the items table as the live catalogue has it (the history's table with every listing
    on the items topic applied), for a backfill or training run to read: pass its folder as the
    history with the customers and bookings beside it."""
    from streaming.catalogue.live import export as current_items
    from streaming.history.tables import ITEMS, write_table

    settings = get_settings()
    items, listed = current_items(settings)
    write_table(items, ITEMS, out)
    console.print(f"{len(items):,} items ({listed:,} as listed on {settings.topic_items}) written to {out}")


@dlq_app.command()
def replay(
    reason: Annotated[str, typer.Option(help="Replay letters whose reason contains this.")] = "",
    dry_run: Annotated[bool, typer.Option(help="Say what would be replayed; send and remember nothing.")] = False,
    from_beginning: Annotated[bool, typer.Option(help="Read the whole DLQ again, not from the last replay.")] = False,
) -> None:
    """Send rejected bookings back to the bookings topic once their item is in the catalogue
    (by default the letters rejected as an unknown item). Each letter is replayed once."""
    from streaming.catalogue.live import current_catalogue
    from streaming.consumer.dead_letters import UNKNOWN_ITEM_REASON
    from streaming.consumer.dlq_replay import replay as run_replay

    settings = get_settings()
    reason = reason or UNKNOWN_ITEM_REASON
    catalogue = current_catalogue(settings)
    with progress_bar(console) as bar:
        task = bar.add_task(f"reading {settings.topic_bookings_dlq}", total=None)
        report = run_replay(settings, catalogue, reason, dry_run, from_beginning,
                            progress=lambda done, total: bar.update(task, completed=done, total=total))  # fmt: skip
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{report.read:,} letters read; {verb} {len(report.replayed):,} to {settings.topic_bookings}"
                  f" (reason containing {reason!r})")  # fmt: skip
    for event_id in report.replayed[:20]:
        console.print(f"  {verb} {event_id}")
    if len(report.replayed) > 20:
        console.print(f"  ... and {len(report.replayed) - 20:,} more")
    if report.skipped_done:
        console.print(f"{report.skipped_done:,} replayed by an earlier run, not sent again")
    for why, n in report.left.most_common():
        console.print(f"left {n:,}: {why}")
    if report.waiting:
        shown = ", ".join(sorted(set(report.waiting))[:10])
        console.print(f"items still unknown: {shown}{' ...' if len(set(report.waiting)) > 10 else ''}")
    if report.other_reasons:
        console.print(f"{report.other_reasons:,} letters with other reasons or sources, not picked (see --reason)")
