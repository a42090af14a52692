"""Kafka throughput with the project's real clients: ``python -m tests.benchmarks.kafka_bench``.

Produces simulated booking events (acks=all, keyed by item id, as the app does) to a fresh
topic and consumes them all back with one consumer. The produce rate includes the final flush,
so it counts only acknowledged writes. Prints ONE JSON line on stdout; progress goes to stderr.
Needs a broker: ``rental services up`` (or KAFKA_BOOTSTRAP_SERVERS).
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import uuid
from datetime import date

import typer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.codec import has_lz4
from rich.console import Console

from rental.connections import kafka_options
from rental.progress import progress_bar
from rental.servers import ServiceError
from rental.servers.topics import admin_client, ensure_topics
from rental.settings import get_settings
from streaming.events import decode, encode
from streaming.simulator.history import simulate
from streaming.simulator.replay import history_events
from streaming.simulator.world import SimulationConfig

stderr = Console(stderr=True)


def simulated_payloads(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs: the first ``n`` events of a simulated history, as the app sends them."""
    config = SimulationConfig(seed=seed, items=20_000, bookings=int(n * 1.05) + 100, end=date(2026, 1, 1))
    events = itertools.islice(history_events(simulate(config).bookings), n)
    payloads = [(event.item_id.encode(), encode(event)) for event in events]
    if len(payloads) < n:
        raise RuntimeError(f"the simulated history held only {len(payloads)} events, {n} asked for")
    return payloads


def _progress():
    return progress_bar(stderr)


def run(events: int, partitions: int, batch_kb: int, linger_ms: int, compression: str | None) -> dict:
    s = get_settings()
    bootstrap = s.bootstrap_servers
    topic = f"bench.bookings.{uuid.uuid4().hex[:10]}"
    with admin_client(s) as admin:
        ensure_topics(admin, {topic: (partitions, 3600 * 1000)})
    try:
        with stderr.status(f"simulating {events:,} booking events ..."):
            payloads = simulated_payloads(events, s.seed)
        message_bytes = sum(len(v) for _, v in payloads) / events

        producer = KafkaProducer(
            **kafka_options(s), acks="all", linger_ms=linger_ms, batch_size=batch_kb * 1024,
            compression_type=compression,
        )  # fmt: skip
        failures: list[Exception] = []
        with _progress() as progress:
            task = progress.add_task("producing (acks=all)", total=events)
            t0 = time.perf_counter()
            for i, (key, value) in enumerate(payloads, 1):
                producer.send(topic, key=key, value=value).add_errback(failures.append)
                if i % 5000 == 0:
                    progress.update(task, completed=i)
            producer.flush()
            produce_s = time.perf_counter() - t0
            progress.update(task, completed=events)
        producer.close()
        if failures:
            raise ServiceError(f"{len(failures)} sends failed, first: {failures[0]!r}")

        consumer = KafkaConsumer(
            **kafka_options(s), group_id=None, enable_auto_commit=False,
            max_poll_records=10_000, fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
        )  # fmt: skip
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        values: list[bytes] = []
        with _progress() as progress:
            task = progress.add_task("consuming", total=events)
            t0 = time.perf_counter()
            deadline = time.monotonic() + 600
            while len(values) < events and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    values += [r.value for r in batch]
                progress.update(task, completed=len(values))
            consume_s = time.perf_counter() - t0
        consumer.close()
        if len(values) != events:
            raise ServiceError(f"consumed {len(values)} of {events} events")

        t0 = time.perf_counter()
        for value in values:
            decode(value)
        decode_s = time.perf_counter() - t0
    finally:
        with admin_client(s) as admin:
            admin.delete_topics([topic], raise_errors=False)
    return {
        "produce_events_per_s": round(events / produce_s),
        "consume_events_per_s": round(events / consume_s),
        "decode_events_per_s": round(events / decode_s),
        "events": events,
        "partitions": partitions,
        "message_bytes": round(message_bytes, 1),
        "produce_mb_per_s": round(events * message_bytes / produce_s / 1e6, 2),
        "acks": "all",
        "compression": compression or "none",
        "batch_kb": batch_kb,
        "linger_ms": linger_ms,
        "kafka_version": s.kafka_version if not s.kafka_is_external else "external",
        "bootstrap_servers": bootstrap,
    }


def main(
    events: int = typer.Option(200_000, min=1, help="Events to produce and consume."),
    partitions: int = typer.Option(6, min=1, help="Partitions of the fresh benchmark topic."),
    batch_kb: int = typer.Option(256, min=1, help="Producer batch size in KiB."),
    linger_ms: int = typer.Option(20, min=0, help="Producer linger in ms."),
    compression: str = typer.Option("auto", help="none, gzip, lz4 or auto (lz4 if installed, else none)."),
) -> None:
    codec = {"auto": "lz4" if has_lz4() else None, "none": None}.get(compression, compression)
    try:
        result = run(events, partitions, batch_kb, linger_ms, codec)
    except ServiceError as exc:
        stderr.print(
            f"[bold red]error:[/] {exc}\n  start the broker with: rental services up (or set KAFKA_BOOTSTRAP_SERVERS)"
        )
        raise typer.Exit(1) from None
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    typer.run(main)
