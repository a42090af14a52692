"""`rental demo live`: the feature consumer at work, watched through Feast.

Starts `rental stream features`, streams live bookings with a demand spike on the history's
most booked item, and prints that item's online features every couple of seconds, as the
pricing service will read them, so the popularity can be seen rising as bookings arrive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rental.demo.stream import start_consumer, stop_consumer, stream_with_spike, watched_item
from rental.settings import get_settings

console = Console()
SHOWN = ("bookings_7d", "bookings_30d", "revenue_7d", "utilisation_30d", "last_booking_at")


def live(
    seconds: Annotated[float, typer.Option(help="How long to stream.")] = 15.0,
    rate: Annotated[float, typer.Option(help="Background bookings per second.")] = 100.0,
    spike: Annotated[float, typer.Option(help="Extra bookings per second of the watched item.")] = 3.0,
) -> None:
    """Stream bookings into the running consumer and watch one item's features move."""
    from streaming.feature_store import feature_store

    settings = get_settings()
    world, bookings, item_id, customer_id = watched_item(settings, busiest_share=0.0)
    store = feature_store(settings)
    features = [f"item_popularity:{name}" for name in SHOWN]

    def read() -> dict:
        values = store.get_online_features(features=features, entity_rows=[{"item_id": item_id}]).to_dict()
        return {name: values[name][0] for name in SHOWN}

    table = Table(title=f"online features of {item_id}, read through Feast while bookings stream in")
    table.add_column("t (s)", justify="right")
    for name in SHOWN:
        table.add_column(name, justify="right")
    consumer = start_consumer(settings)
    try:
        sent = stream_with_spike(
            settings, world, bookings, item_id, customer_id, rate=rate, spike=spike, seconds=seconds, tail_s=3,
            every=lambda elapsed: table.add_row(f"{elapsed:.0f}", *[_shown(v) for v in read().values()]),
            price_per_day=120.0, lead_days=7,
        )  # fmt: skip
    finally:
        stop_consumer(consumer)
    console.print(table)
    console.print(f"{sent} spike bookings of {item_id} on top of {rate:g}/s background bookings for {seconds:g} s")


def _shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return f"{value:,}"
