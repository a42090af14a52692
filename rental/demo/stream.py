"""What both demonstrations do: pick the item to watch, run the feature consumer as a child,
and stream background bookings with a spike of the watched item."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console

from rental.settings import Settings
from streaming.events import BookingCreated, encode

console = Console()


def watched_item(settings: Settings, busiest_share: float):
    """The simulated world, its bookings, the item to watch and a customer. The item is the one at
    ``busiest_share`` down the last 30 days' ranking: 0.0 the busiest, 0.8 a quiet one whose
    popularity has room to rise."""
    from streaming.simulator.cli import load_world

    world, bookings = load_world(settings.simulation_dir)
    recent = bookings[bookings["event_time"] > bookings["event_time"].max() - timedelta(days=30)]
    counts = recent["item_id"].value_counts()
    item_id = str(counts.index[int(len(counts) * busiest_share)])
    return world, bookings, item_id, str(bookings["customer_id"].iloc[0])


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
