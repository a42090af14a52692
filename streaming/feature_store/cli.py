"""`rental features ...`: backfill the offline store, apply the Feast repo, materialise, inspect."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rental.progress import progress_bar
from rental.settings import get_settings

app = typer.Typer(help="Features: backfill, Feast apply and materialise, and a look at an item.", no_args_is_help=True)
console = Console()


@app.command()
def backfill(
    history_dir: Annotated[Path | None, typer.Option(help="Default: <data dir>/simulation.")] = None,
    as_of: Annotated[datetime | None, typer.Option(help="Decay windows up to here (default: now, UTC).")] = None,
) -> None:
    """Build the Parquet offline store from a booking history (replaces what is there)."""
    import shutil

    from streaming.backfill import run_backfill
    from streaming.feature_store.offline import clear as clear_offline_store
    from streaming.history.tables import history_paths, load_history

    settings = get_settings()
    history = load_history(*history_paths(history_dir or settings.history_dir))
    as_of = (as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of) or datetime.now(UTC)
    _reset_stages(settings)  # the stages restart from the new backfill, not from their old state
    clear_offline_store(settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    n_events = len(history.bookings) + int(history.bookings["cancelled_at"].notna().sum())
    with progress_bar(console) as bar:
        task = bar.add_task("backfilling features (events)", total=n_events)
        pipeline = run_backfill(history, settings, as_of, progress=lambda n: bar.advance(task, n))
    console.print(
        f"{pipeline.events:,} events -> offline store {settings.offline_uri}, windows as of {as_of:%Y-%m-%d %H:%M} UTC"
    )


def _reset_stages(settings) -> None:
    """The stages' groups and state go with the old backfill. Without Kafka the backfill still
    runs, and the stages will refuse to start until their groups are reset."""
    from kafka.errors import KafkaError

    from streaming.consumer.reset import reset_stages

    try:
        reset_stages(settings)
    except KafkaError as exc:
        console.print(f"[yellow]could not reset the stream stages' consumer groups ({exc!r}): run "
                      "`rental stream reset` before starting `rental stream features`[/yellow]")  # fmt: skip


@app.command()
def apply() -> None:
    """`feast apply` with the settings' Redis and registry."""
    from streaming.feature_store.store import apply as feast_apply

    feast_apply(get_settings())


@app.command()
def materialize(
    end: Annotated[datetime | None, typer.Option(help="Default: now, UTC.")] = None,
    full: Annotated[bool, typer.Option(help="From the beginning, not from the last run (after a backfill).")] = False,
) -> None:
    """Load the latest offline value of every entity into Redis (incremental after the first run)."""
    from streaming.feature_store.store import feature_store

    store = feature_store(get_settings())
    end = (end.replace(tzinfo=UTC) if end and end.tzinfo is None else end) or datetime.now(UTC)
    if full or all(not fv.materialization_intervals for fv in store.list_feature_views()):
        from streaming.events import EPOCH

        store.materialize(start_date=EPOCH, end_date=end)
    else:
        store.materialize_incremental(end_date=end)


@app.command()
def compact(
    before: Annotated[datetime | None, typer.Option(help="Merge days before this one (default: today, UTC).")] = None,
) -> None:
    """Merge each closed day's small streamed files into one file per view and day."""
    from streaming.feature_store.offline import compact as compact_days

    day = (before or datetime.now(UTC)).date()
    for view, (merged, written) in compact_days(get_settings(), before=day).items():
        console.print(f"{view}: {merged:,} files -> {written:,}")


@app.command()
def show(
    item_id: Annotated[str | None, typer.Argument(help="Default: the history's most booked item.")] = None,
    customer_id: Annotated[str | None, typer.Option(help="Also show this customer's features.")] = None,
) -> None:
    """An item's online features, read through Feast from Redis, as the pricing service sees them."""
    from streaming.feature_store.store import feature_store, model_feature_service

    settings = get_settings()
    if item_id is None:
        from streaming.history.tables import history_paths, read_table

        bookings = read_table(history_paths(settings.history_dir)[2])
        item_id = str(bookings["item_id"].value_counts().index[0])
    store = feature_store(settings)
    row = {"item_id": item_id, "customer_id": customer_id or "", "category": ""}
    values = store.get_online_features(features=model_feature_service(store), entity_rows=[row]).to_dict()
    category = values.get("item_category", [None])[0]
    if category:  # the category's season needs the item's category: read it again with it
        row["category"] = category
        values = store.get_online_features(features=model_feature_service(store), entity_rows=[row]).to_dict()
    table = Table(title=f"online features of {item_id}")
    table.add_column("feature")
    table.add_column("value", justify="right")
    for name, value in values.items():
        if name not in row:
            table.add_row(name, "-" if value[0] is None else str(value[0]))
    console.print(table)
