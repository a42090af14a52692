"""The history archive's figures: ``python -m tests.benchmarks.archive_bench`` (``make bench-archive``).

A simulated history (the demo's size by default) in a temporary data dir, ``events`` live
bookings from the simulator's ``LiveSimulator`` (with their cancellations) on a bookings topic of
the benchmark's own, then ``rental history archive``'s function in a process of its own: its
time, its peak RSS against a process that only loads the same history (what the new events
cost), and a second run that finds nothing new. Prints ONE JSON line on stdout; progress goes
to stderr.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

stderr = Console(stderr=True)
RUN = """
import json, pickle, resource, sys, time
from streaming.history.archive import archive
from streaming.history.tables import history_paths, load_history
settings = pickle.loads(open(sys.argv[1], "rb").read())
started = time.perf_counter()
if sys.argv[2] == "load":
    load_history(*history_paths(settings.history_dir))
    report = {}
else:
    report = archive(settings).as_dict()
report["seconds"] = time.perf_counter() - started
report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(report))
"""


def _child(pickled: Path, what: str) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(pickled), what], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(
    events: int = typer.Option(300_000, help="live bookings to archive"),
    items: int = typer.Option(2_000, help="catalogue size"),
    bookings: int = typer.Option(60_000, help="bookings in the simulated history"),
    seed: int = typer.Option(42, help="simulation seed"),
) -> None:
    from rental.servers.topics import admin_client, ensure_topics
    from rental.settings import Settings
    from streaming.events import encode
    from streaming.history.tables import write_history
    from streaming.producer import make_producer
    from streaming.simulator.history import simulate
    from streaming.simulator.live import LiveSimulator
    from streaming.simulator.world import SimulationConfig, World

    run = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="archive-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp)).model_copy(update={
            "topic_bookings": f"bench.{run}.bookings", "topic_items": f"bench.{run}.items",
            "history_archive_group_id": f"bench-archive-{run}"})  # fmt: skip
        config = SimulationConfig(seed=seed, items=items, bookings=bookings, end=datetime.now(UTC).date())
        stderr.print(f"simulating {bookings:,} bookings ...")
        history = simulate(config)
        write_history(history, settings.history_dir)
        with admin_client(settings) as admin:
            ensure_topics(admin, {settings.topic_bookings: (settings.bookings_partitions, 3600 * 1000)})
        try:
            stderr.print(f"producing {events:,} live bookings to {settings.topic_bookings} ...")
            simulator, producer, sent = LiveSimulator(World(config), history.bookings, seed=seed), None, 0
            producer = make_producer(settings)
            started = time.perf_counter()
            while sent < events:
                for event in simulator.batch(datetime.now(UTC), min(10_000, events - sent)):
                    producer.send(settings.topic_bookings, key=event.item_id, value=encode(event))
                    sent += event.event_type == "booking_created"
            producer.flush()
            producer.close()
            produce_s = time.perf_counter() - started
            pickled = Path(tmp) / "settings.pickle"
            pickled.write_bytes(pickle.dumps(settings))
            stderr.print("archiving ...")
            baseline = _child(pickled, "load")
            first = _child(pickled, "archive")
            second = _child(pickled, "archive")
        finally:
            with admin_client(settings) as admin:
                admin.delete_topics([settings.topic_bookings], raise_errors=False)
    print(json.dumps({
        "history_bookings": len(history.bookings), "events_read": first["read"], "appended": first["appended"],
        "cancelled": first["cancelled"], "produce_s": round(produce_s, 1), "archive_s": round(first["seconds"], 1),
        "records_per_s": round(first["read"] / first["seconds"]),
        "peak_rss_mb": round(first["peak_rss_mb"]), "load_only_peak_rss_mb": round(baseline["peak_rss_mb"]),
        "second_run_read": second["read"], "second_run_s": round(second["seconds"], 1),
    }))  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
