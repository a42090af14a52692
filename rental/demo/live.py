"""`rental demo live`: the feature consumer at work, watched through Feast.

Starts `rental stream features`, streams live bookings with a demand spike on the history's
most booked item, and prints that item's online features every couple of seconds, as the
pricing service will read them, so the popularity can be seen rising as bookings arrive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from rental.settings import get_settings
from streaming.events import BookingCreated, encode

console = Console()
SHOWN = ("bookings_7d", "bookings_30d", "revenue_7d", "utilisation_30d", "last_booking_at")


def live(
    seconds: Annotated[float, typer.Option(help="How long to stream.")] = 15.0,
    rate: Annotated[float, typer.Option(help="Background bookings per second.")] = 100.0,
    spike: Annotated[float, typer.Option(help="Extra bookings per second of the watched item.")] = 3.0,
) -> None:
    """Stream bookings into the running consumer and watch one item's features move."""
    from streaming.feature_store import feature_store
    from streaming.simulator.cli import load_world

    settings = get_settings()
    world, bookings = load_world(settings.simulation_dir)
    recent = bookings[bookings["event_time"] > bookings["event_time"].max() - timedelta(days=30)]
    item_id = str(recent["item_id"].value_counts().index[0])
    customer_id = str(bookings["customer_id"].iloc[0])
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


def start_consumer(settings) -> subprocess.Popen:
    """`rental stream features` as a child, once it holds its partitions (checkpoints every 2 s)."""
    env = os.environ | {"RENTAL_CHECKPOINT_EVERY_S": "2"}
    consumer = subprocess.Popen([sys.executable, "-m", "rental.cli", "stream", "features", "--quiet"], env=env)
    with console.status("the feature consumer is starting (joining its consumer groups) ..."):
        _wait_until_stable(settings, consumer)
    return consumer


def stop_consumer(consumer: subprocess.Popen) -> None:
    consumer.send_signal(signal.SIGTERM)
    consumer.wait(timeout=120)


def stream_with_spike(settings, world, bookings, item_id: str, customer_id: str, *, rate: float, spike: float,
                      seconds: float, tail_s: float, every, price_per_day: float, lead_days: int) -> int:  # fmt: skip
    """Background bookings at ``rate`` per second plus ``spike`` per second of ``item_id`` for
    ``seconds``; ``every(elapsed)`` at the start and every 2 s until ``tail_s`` after the end.
    Returns how many bookings of the item were sent."""
    from streaming.producer import make_producer
    from streaming.simulator.live import LiveSimulator, stream_live

    producer = make_producer(settings)
    background = threading.Thread(
        target=stream_live, args=(producer, settings.topic_bookings, LiveSimulator(world, bookings), rate, seconds),
        daemon=True,
    )  # fmt: skip
    started = time.monotonic()
    every(0.0)
    background.start()
    sent, next_print = 0, 2.0
    while (elapsed := time.monotonic() - started) < seconds + tail_s:
        if elapsed < seconds and sent < elapsed * spike:
            now = datetime.now(UTC)
            event = BookingCreated(event_id=f"demo-{uuid.uuid4().hex}", booking_id=f"demo-{uuid.uuid4().hex[:12]}",
                                   item_id=item_id, customer_id=customer_id, event_time=now,
                                   rental_start=(now + timedelta(days=lead_days)).date(), rental_days=3,
                                   price_per_day=price_per_day)  # fmt: skip
            producer.send(settings.topic_bookings, key=item_id, value=encode(event))
            sent += 1
        if elapsed >= next_print:
            every(elapsed)
            next_print += 2.0
        time.sleep(0.05)
    background.join()
    producer.close()
    return sent


def _wait_until_stable(settings, consumer: subprocess.Popen, timeout_s: float = 180) -> None:
    from streaming.consumer.supervisor import GroupLag

    groups = GroupLag(settings, ["items", "customers", "categories"])
    try:
        deadline = time.monotonic() + timeout_s
        while not groups.stable():
            problem = None
            if consumer.poll() is not None:
                problem = f"the feature consumer exited with {consumer.returncode}"
            elif time.monotonic() > deadline:
                problem = f"the feature consumer did not join its groups in {timeout_s:.0f} s"
            if problem:
                console.print(f"[red]{problem}[/red]")
                raise typer.Exit(1)
            time.sleep(0.5)
        time.sleep(2)  # the partitions it was given are set up on its next poll
    finally:
        groups.close()


def _shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return f"{value:,}"
