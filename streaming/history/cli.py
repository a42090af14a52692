"""`rental history ...`: load a user's own history, append the live bookings to it, and summarise any history."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from rental.settings import get_settings
from streaming.history.tables import (
    BOOKINGS,
    CUSTOMERS,
    ITEMS,
    OPTIONAL_MEANING,
    TableError,
    header_report,
    history_paths,
    load_history,
    write_history,
)

app = typer.Typer(help="Booking history: load your own, or summarise one.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 140)  # a log keeps the whole table


@app.command()
def load(
    items: Annotated[Path, typer.Option(exists=True, help="Catalogue, CSV or Parquet.")],
    customers: Annotated[Path, typer.Option(exists=True, help="Customers, CSV or Parquet.")],
    bookings: Annotated[Path, typer.Option(exists=True, help="Bookings, CSV or Parquet.")],
    out: Annotated[Path | None, typer.Option(help="Default: where the pipeline reads (RENTAL_HISTORY_DIR).")] = None,
    quarantine: Annotated[bool, typer.Option(help="Set bad rows aside in rejected_*.csv instead of failing.")] = False,
) -> None:
    """Check your catalogue, customers and bookings and write them where the pipeline reads."""
    try:
        history = load_history(items, customers, bookings, quarantine=quarantine)
    except TableError as exc:
        console.print(f"[red]rejected:[/red] {exc}")
        raise typer.Exit(2) from None
    out = out or get_settings().history_dir
    paths = write_history(history, out)
    for path, table in ((items, ITEMS), (customers, CUSTOMERS), (bookings, BOOKINGS)):
        ignored, absent = header_report(path, table)
        if ignored:
            console.print(f"{path.name}: ignored (not in the contract): {escape(', '.join(ignored))}")
        for name in absent:
            console.print(f"{path.name}: no {name}, which means {OPTIONAL_MEANING[f'{table.name}.{name}']}")
    console.print(f"wrote {len(history.items):,} items, {len(history.customers):,} customers, "
                  f"{len(history.bookings):,} bookings to {out}")  # fmt: skip
    for name, path in paths.items():
        if name.startswith("rejected_"):
            console.print(
                f"[yellow]{len(history.rejected[name.removeprefix('rejected_')]):,} bad rows set aside in {path}[/yellow]"
            )


@app.command()
def summary(directory: Annotated[Path | None, typer.Argument(help="Default: <data dir>/simulation.")] = None) -> None:
    """What a history holds: sizes, dates, prices, cancellations and each category's season."""
    directory = directory or get_settings().history_dir
    history = load_history(*history_paths(directory))
    b = history.bookings.merge(history.items[["item_id", "category"]], on="item_id")
    console.print(f"[bold]{directory}[/bold]: {len(history.items):,} items, {len(history.customers):,} customers, "
                  f"{len(b):,} bookings from {b.event_time.min():%Y-%m-%d} to {b.event_time.max():%Y-%m-%d}; "
                  f"{b.cancelled_at.notna().mean():.1%} cancelled; price per day median "
                  f"{b.price_per_day.median():.2f}, p90 {b.price_per_day.quantile(0.9):.2f}")  # fmt: skip
    month = pd.to_datetime(b["rental_start"]).dt.month
    table = RichTable(title="rentals starting per month, by category")
    table.add_column("category")
    for m in range(1, 13):
        table.add_column(pd.Timestamp(2000, m, 1).strftime("%b"), justify="right")
    table.add_column("median £/day", justify="right")
    for category, group in b.groupby("category"):
        counts = month[group.index].value_counts().reindex(range(1, 13), fill_value=0)
        table.add_row(escape(str(category)), *[f"{c:,}" for c in counts], f"{group.price_per_day.median():.2f}")
    console.print(table)
    if "expected_price_per_day" in b and b["expected_price_per_day"].notna().all():
        floor = (b.price_per_day - b.expected_price_per_day).abs().mean()
        console.print(f"noise floor: MAE of the true expected price = {floor:.3f} per day")


@app.command()
def archive() -> None:
    """Append the bookings topic's new bookings (and cancellations) to the history training reads:
    from the archive group's committed offsets to the topic's end now, then commit."""
    from streaming.history.archive import archive as run_archive

    settings = get_settings()
    try:
        report = run_archive(settings)
    except TableError as exc:
        console.print(f"[red]history not appended:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if report.topic_missing:
        console.print(f"no topic {settings.topic_bookings}: nothing to append")
    console.print(f"{report.read:,} records read from {settings.topic_bookings} "
                  f"(group {settings.history_archive_group_id}): {report.appended:,} bookings appended, "
                  f"{report.cancelled:,} cancellations applied, {report.duplicates:,} duplicates skipped; "
                  f"{report.items_added:,} items from the live catalogue and {report.customers_added:,} "
                  "customers added")  # fmt: skip
    for reason, count in sorted(report.rejected.items()):
        console.print(f"[yellow]{count:,} set aside: {escape(reason)}[/yellow]")
    if report.lost_to_retention:
        console.print(f"[red]{report.lost_to_retention:,} records left the topic (retention) before they were "
                      "archived[/red]")  # fmt: skip
    if report.span:
        console.print(f"the history: {report.bookings:,} bookings from {report.span[0]:%Y-%m-%d %H:%M} "
                      f"to {report.span[1]:%Y-%m-%d %H:%M} UTC in {settings.history_dir}")  # fmt: skip
