"""Feature consumer figures: ``python -m tests.benchmarks.stream_bench`` (``make bench-stream``).

In one run, on its own topics, consumer groups and Redis db:

1. a simulated year of history is produced to Kafka as booking events: 100,000 items and
   1,000,000 bookings by default (ten a year an item on average, Zipf 0.8 popularity), ~1.07
   million events with the cancellations;
2. a plain kafka-python consumer reads the topic back with the stages' fetch sizes: the raw
   consume rate; and once reading whole record batches as the items stage reads them
   (``record_blocks``): how fast the topic can be read at all, beside it for reference;
3. ``rental stream features`` (all three stages, one process each) consumes the same events from
   the start until drained: events/s from Kafka to features written in Redis and Parquet, and
   every process's peak memory (each stage's and the supervisor's, the largest over the runs)
   and the window state each stage saved at its last checkpoint (its state files).
   Both clocks start when the poll that returns the first records is made, once partitions are
   assigned (so that poll's fetch and parse count); the consumer's stops when every stage's
   committed offset reaches the end, which it moves only after the Parquet rows and state are
   written.
   Steps 2 and 3 alternate ``--repeats`` times (each consumer run from scratch: new groups and
   forwarded topics, empty Redis db and offline store), and the figures are the medians: on a
   shared two-core machine one run of either moves by a third;
4. with the consumer caught up, live bookings stream at a steady 1,000 events/s while probe
   bookings of items nobody else books are timed from produce to the value being readable
   through Feast ``get_online_features``: freshness p50 and p99.

Prints ONE JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import typer
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console

from rental.connections import kafka_options
from rental.settings import get_settings
from streaming.consumer.joining import fetch_options
from streaming.events import BookingCreated, encode
from streaming.feature_store.store import feature_store
from streaming.history.tables import ITEMS, write_table
from streaming.producer import make_producer, send_events
from streaming.simulator.history import simulate
from streaming.simulator.live import LiveSimulator, stream_live
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig, World
from streaming.wire.record_blocks import read_blocks, warm_up
from tests.benchmarks.process_memory import TreeMemory
from tests.worlds.stream_world import make_world

stderr = Console(stderr=True)
N_PROBES = 20


def _raw_consume_rate(settings, total: int, blocks: bool = False) -> float:
    consumer = KafkaConsumer(
        **kafka_options(settings), enable_auto_commit=False, **fetch_options(settings)
    )  # the stages' own fetch sizes
    size = len  # of a partition's records
    if blocks:  # a partition's blocks of records; the compiled pass loaded before the clock
        warm_up()
        read_blocks(consumer)
        size = lambda got: sum(map(len, got))  # noqa: E731
    # Every partition assigned by hand: no group join to wait out inside the timed polls (a
    # stage's clock, too, starts only once its partitions are assigned and set up).
    partitions = [
        TopicPartition(settings.topic_bookings, p) for p in consumer.partitions_for_topic(settings.topic_bookings)
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen, started = 0, None
    while seen < total:
        asked = time.perf_counter()
        batch = consumer.poll(timeout_ms=500)
        if batch and started is None:  # the clock starts when the poll that returns records is made
            started = asked  # (after the group join), so the first poll's fetch and parse count
        seen += sum(map(size, batch.values()))
    elapsed = time.perf_counter() - started
    consumer.close()
    return total / elapsed


def _probe(world, store, producer, item: str, timeout_s: float) -> float:
    """Book ``item`` once; milliseconds until its bookings_7d, read through Feast, shows it."""
    features = ["item_popularity:bookings_7d"]

    def read() -> int:
        return (
            store.get_online_features(features=features, entity_rows=[{"item_id": item}]).to_dict()["bookings_7d"][0]
            or 0
        )

    before, now = read(), datetime.now(UTC)
    event = BookingCreated(event_id=f"probe-{uuid.uuid4().hex}", booking_id=f"probe-{uuid.uuid4().hex[:12]}",
                           item_id=item, customer_id="probe-customer", event_time=now, rental_start=now.date(),
                           rental_days=2, price_per_day=50.0)  # fmt: skip
    sent = time.perf_counter()
    producer.send(world.settings.topic_bookings, key=item, value=encode(event))
    producer.flush()
    while read() <= before:
        if time.perf_counter() - sent > timeout_s:
            raise RuntimeError(f"probe of {item} not visible after {timeout_s:.0f} s")
        time.sleep(0.002)
    return (time.perf_counter() - sent) * 1000


def _freshness(world, probes: list[str], rate: float, seconds: float, sim: LiveSimulator) -> list[float]:
    """Produce-to-readable latencies of probe bookings, under a steady background stream."""
    store = feature_store(world.settings)
    producer = make_producer(world.settings, linger_ms=0)
    _probe(world, store, producer, probes[0], timeout_s=180)  # the consumer is up and caught up
    background = make_producer(world.settings)
    done = threading.Event()

    def load():
        stream_live(background, world.settings.topic_bookings, sim, rate, duration_s=seconds)
        done.set()

    threading.Thread(target=load, daemon=True).start()
    time.sleep(2)  # the background stream is steady before probing
    latencies, i = [], 0
    while not done.is_set():
        latencies.append(_probe(world, store, producer, probes[i % len(probes)], timeout_s=60))
        i += 1
        time.sleep(0.05)
    producer.close()
    background.close()
    return latencies


def _catch_up(world, env: dict[str, str]) -> dict:
    """One consumer run over the whole topic, from scratch, until drained: its stats, with
    each stage's saved state in MB (its checkpoint files: window arrays and seen event ids)."""
    stats_file = world.settings.data_dir / f"stats-{env['RENTAL_CONSUMER_GROUP_PREFIX']}.json"
    consumer = world.consumer("--until-idle", "3", "--stats-json", str(stats_file), **env)
    memory = TreeMemory(consumer.pid).start()
    try:
        if consumer.wait(timeout=3600) != 0:
            raise RuntimeError(f"the consumer failed:\n{world.logs()[-3000:]}")
    finally:
        memory.stop()
    stats = json.loads(stats_file.read_text())
    stats["memory"] = memory.by_name({pid: name for name, pid in stats["pids"].items()}, "supervisor")
    stats["total_pss_mb"] = memory.peak_total_pss
    prefix = env["RENTAL_CONSUMER_GROUP_PREFIX"]
    stats["state_mb"] = {
        stage: sum(f.stat().st_size for f in world.settings.state_dir.glob(f"{prefix}-{stage}/*.state")) / 2**20
        for stage in stats["peak_rss_mb"]
    }
    return stats


def _largest(runs: list[dict], field: str, names: list[str]) -> dict[str, int]:
    """Each named process's largest sampled ``field`` (MB) over the runs."""
    return {name: round(max(run["memory"].get(name, {field: 0})[field] for run in runs)) for name in names}


def _measure(world, history, config, probes: list[str], rate: float, seconds: float, repeats: int) -> tuple:
    """The runs, in the world's own topics: (events, raw rates, raw batch-read rate, each
    consumer run's stats, freshness latencies)."""
    catalogue = pd.concat([history.items, history.items.head(N_PROBES).assign(item_id=probes)], ignore_index=True)
    write_table(catalogue, ITEMS, world.settings.history_dir / "items.parquet")

    stderr.print("producing the history to Kafka ...")
    producer = make_producer(world.settings)
    total = send_events(producer, world.settings.topic_bookings, history_events(history.bookings))
    producer.close()
    stderr.print(f"{total:,} events produced")
    raw_batches = _raw_consume_rate(world.settings, total, blocks=True)
    raws, runs = [], []
    for i in range(repeats):  # side by side: raw, consumer, raw, consumer, ...
        raws.append(_raw_consume_rate(world.settings, total))
        env = world.fresh_start()
        runs.append(_catch_up(world, env))
        stderr.print(f"run {i + 1}/{repeats}: raw {raws[-1]:,.0f} events/s, consumer {total / runs[-1]['busy_s']:,.0f}")

    stderr.print(f"freshness at {rate:,.0f} events/s for {seconds:.0f} s ...")
    live_consumer = world.consumer(**env)  # the last run's consumer, caught up
    try:
        sim = LiveSimulator(World(config), history.bookings, seed=3)
        latencies = _freshness(world, probes, rate, seconds, sim)
    finally:
        live_consumer.terminate()
        live_consumer.wait(timeout=60)

    return total, raws, raw_batches, runs, latencies


def main(
    items: int = typer.Option(100_000, help="Catalogue size."),
    bookings: int = typer.Option(1_000_000, help="Bookings in the produced year of history."),
    rate: float = typer.Option(1_000.0, help="Steady live rate for the freshness run (events/s)."),
    seconds: float = typer.Option(25.0, help="Length of the freshness run."),
    repeats: int = typer.Option(3, min=1, help="Raw and consumer runs, alternating; the figures are their medians."),
) -> None:
    base = get_settings()
    tmp = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    stderr.print(f"simulating {items:,} items, about {bookings:,} bookings ...")
    end = datetime.now(UTC).date()
    config = SimulationConfig(seed=7, items=items, bookings=bookings, end=end)
    history = simulate(config)
    probes = [f"probe_{k:03d}" for k in range(N_PROBES)]
    # Default settings throughout, as production runs: a stage checkpoints every
    # checkpoint_every_s and as soon as it has drained, so busy time ends once all is written.
    world = make_world(tmp, base, history, redis_db=7)
    try:
        total, raws, raw_batches, runs, latencies = _measure(world, history, config, probes, rate, seconds, repeats)
    finally:
        world.remove_topics()
    rates = [total / run["busy_s"] for run in runs]
    consumer, raw = float(np.median(rates)), float(np.median(raws))
    stats = runs[int(np.argsort(rates)[len(rates) // 2])]  # the median run's details
    # The largest process of the consumer in any run, as each measured itself. (This process's
    # RUSAGE_CHILDREN would report its own size: a child forked from it counts the parent's
    # pages until it execs.)
    peak_rss_mb = max(max(*run["peak_rss_mb"].values(), run["supervisor_peak_rss_mb"]) for run in runs)
    process_peak_rss_mb = {name: round(max(run["peak_rss_mb"][name] for run in runs)) for name in stats["peak_rss_mb"]}
    process_peak_rss_mb["supervisor"] = round(max(run["supervisor_peak_rss_mb"] for run in runs))
    # Sampled from /proc (tests.benchmarks.process_memory): each process's peak PSS, its fair
    # share of the pages it shares with the processes it was forked from or forked; the
    # checkpoint writers' RSS; and the whole consumer's peak, the sum of its processes' PSS.
    sampled = sorted({name for run in runs for name in run["memory"]})
    process_peak_pss_mb = _largest(runs, "pss", sampled)
    writer_peak_rss_mb = _largest(runs, "rss", [name for name in sampled if name.endswith(" writers")])
    consumer_peak_total_pss_mb = round(max(run["total_pss_mb"] for run in runs))

    slowest = sorted(range(len(latencies)), key=latencies.__getitem__)[-5:]
    stderr.print("slowest probes (probe number: ms): " + ", ".join(f"{i}: {latencies[i]:.0f}" for i in slowest))
    print(json.dumps({
        "consumer_events_per_s": round(consumer),
        "raw_consume_events_per_s": round(raw),
        "ratio_to_raw": round(consumer / raw, 3),
        "runs": [{"consumer": round(c), "raw": round(r), "ratio": round(c / r, 3)} for c, r in zip(rates, raws, strict=True)],
        "raw_batch_read_events_per_s": round(raw_batches),
        "stage_events_per_s": stats["stage_events_per_s"],
        "stage_timeline_s": stats["stage_timeline_s"],
        "stage_cpu_s": stats["cpu_s"],
        "stage_checkpoint_cpu_s": stats["checkpoint_cpu_s"],
        "freshness_p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "freshness_p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "freshness_probes": len(latencies),
        "peak_rss_mb": round(peak_rss_mb),
        "process_peak_rss_mb": process_peak_rss_mb,  # each process's largest over the runs
        "stage_peak_rss_mb": {name: round(mb) for name, mb in stats["peak_rss_mb"].items()},  # the median run's
        "writer_peak_rss_mb": writer_peak_rss_mb,
        "process_peak_pss_mb": process_peak_pss_mb,
        "consumer_peak_total_pss_mb": consumer_peak_total_pss_mb,
        "stage_state_mb": {name: round(mb, 1) for name, mb in stats["state_mb"].items()},  # the median run's
        "events": total,
        "items": items,
        "stages": "items,customers,categories (one process each)",
        "live_rate_events_per_s": rate,
    }))  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
