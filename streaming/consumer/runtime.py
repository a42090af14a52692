"""One consumer stage in this process, from its inputs to its summary line.

The command runs one stage here; the supervisor forks one process per stage from a parent that
has already loaded what they share (``preload``, ``StageInputs``). Both run the stage the same
way, through ``run_one``.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import typer
from rich.console import Console

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.consumer.dead_letters import DeadLetters
from streaming.consumer.runner import StageRunner
from streaming.consumer.stages import stages as all_stages
from streaming.consumer.usage import cpu_s, give_back_memory, peak_rss_mb
from streaming.features.pipeline import Catalogue
from streaming.history.tables import history_paths

if TYPE_CHECKING:
    from feast import FeatureStore

console = Console(stderr=True)


class Display(Protocol):
    """A live view of a running stage: ``update`` after every poll (the first call shows it),
    ``stop`` once the stage has checkpointed and closed."""

    def update(self, runner: StageRunner) -> None: ...

    def stop(self, runner: StageRunner) -> None: ...


def load_catalogue(settings: Settings) -> Catalogue:
    """The items table with the items topic's listings on top; a stage cannot run without the table."""
    from streaming.catalogue.live import current_catalogue

    path = history_paths(settings.history_dir)[0]
    if not path.exists():
        raise typer.BadParameter(f"no catalogue at {path}: run `rental simulate history` or `rental history load`")
    return current_catalogue(settings)


class StageInputs(NamedTuple):
    """What every stage reads before it consumes: the item catalogue and the feature store
    (its registry). A supervisor loads them once and forks its stages from there: loaded in
    each stage, ~1.2 s of CPU apiece ran beside the items stage's first polls, and the
    downstream stages joined their groups seconds after it."""

    catalogue: Catalogue
    store: FeatureStore

    @classmethod
    def load(cls, settings: Settings) -> StageInputs:
        from streaming.feature_store.store import feature_store

        inputs = cls(load_catalogue(settings), feature_store(settings))
        gc.collect()  # the catalogue's table and frames, before their pages go back
        give_back_memory()  # what reading the catalogue freed, before any stage forks from here
        return inputs


class Stop:
    """SIGTERM or Ctrl-C: finish the poll, checkpoint, commit, exit."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_):
        self.requested = True


def run_stage(settings: Settings, name: str, max_seconds: float | None, until_idle: float | None,
              display: Display | None = None, stats: dict | None = None,
              inputs: StageInputs | None = None) -> StageRunner:  # fmt: skip
    """One stage in this process until stopped, out of time, or idle (assigned, no lag, no records)."""
    from kafka import KafkaProducer

    from streaming.consumer.committing import producer_timeouts
    from streaming.feature_store.online_write import OnlineWriter

    defined = all_stages(settings)
    if name not in defined:
        raise typer.BadParameter(f"unknown stage {name!r}; known: {list(defined)}")
    catalogue, store = inputs or StageInputs.load(settings)
    if defined[name].reads_batches:
        # The items stage is the head of the pipeline: the others can only work on what it
        # forwards. Where they share cores, they give way to it and catch up in its gaps.
        os.nice(settings.stream_background_nice)
    preload()  # before joining the group, so the first poll does not wait (done already when forked)
    writer = OnlineWriter(store, settings)
    # Both bounded: a Redis call by the writer's socket timeout, a Kafka send or flush by these.
    producer = KafkaProducer(**kafka_options(settings), acks="all", linger_ms=5,
                             compression_type="lz4", client_id=f"features-{name}-out",
                             **producer_timeouts(settings))  # fmt: skip
    letters = DeadLetters(producer, settings.topic_bookings_dlq, settings.dlq_max_letter_bytes)
    from streaming.catalogue.live import LiveCatalogue  # new listings known here without a restart

    live = LiveCatalogue.start(settings, catalogue, store, producer, writes_attributes=not defined[name].reads_batches)
    runner = StageRunner(defined[name], settings, catalogue, writer, producer, letters)
    stop, started, last_busy = Stop(), time.monotonic(), time.monotonic()
    first_record = last_record = None
    if display:
        display.update(runner)
    try:
        while not stop.requested:
            busy = runner.poll_once()
            runner.rejoin_if_never_assigned()
            now = time.monotonic()
            if busy:
                first_record = first_record or runner.polled_at  # as the raw rate: from the poll that returned records
                last_record = time.time()
            if busy or runner.lag() or not runner.parts:
                last_busy = now
            if display:
                display.update(runner)
            if max_seconds is not None and now - started >= max_seconds:
                break
            if until_idle is not None and now - last_busy >= until_idle:
                break
    finally:
        runner.close()
        live.close()
        writer.close()
        producer.close()
        if stats is not None:
            # Wall-clock times, so a supervisor can combine stages that ran in parallel.
            stats |= {"first_record": first_record, "last_record": last_record, "last_commit": runner.advanced_at,
                      "closed": time.time()}  # fmt: skip
        if display:
            display.stop(runner)
    return runner


def run_one(settings: Settings, name: str, max_seconds: float | None, until_idle: float | None,
            stats_json: Path | None, inputs: StageInputs | None = None,
            display: Display | None = None) -> None:  # fmt: skip
    """One stage in this process, then its counters (to ``stats_json``) and a summary line."""
    stats: dict = {}
    runner = run_stage(settings, name, max_seconds, until_idle, display, stats, inputs)
    letters = runner.dead_letters
    if stats_json:
        stats |= {
            "pid": os.getpid(),  # a benchmark's memory sampler tells the stages apart by it
            "events": {runner.stage.name: runner.counters.events},
            "duplicates": runner.counters.duplicates,
            "dead_letters": letters.count,
            "peak_rss_mb": peak_rss_mb(),
            # CPU of the stage, and of its checkpoint writers (forked children).
            "cpu_s": cpu_s(),
            "checkpoint_cpu_s": cpu_s(resource.RUSAGE_CHILDREN),
        }
        stats_json.write_text(json.dumps(stats))
    console.print(f"{name}: processed {runner.counters.events:,} events; {letters.count:,} sent to the DLQ"
                  + (f" ({letters.reasons})" if letters.count else ""))  # fmt: skip


def preload() -> None:
    """Import and load everything a stage runs (Feast alone is ~7 to 10 s of CPU), so stages forked
    from this process start at once, share those pages, and spend no CPU on it while another
    stage is already consuming."""
    global _preloaded
    if _preloaded:
        return
    import streaming.feature_store.online_write
    import streaming.feature_store.store  # noqa: F401
    from streaming.feature_store.proto_columns import warm_up as warm_up_encoder
    from streaming.feature_store.redis_layout import warm_up as warm_up_keys
    from streaming.features.windows import warm_up as warm_up_windows
    from streaming.wire.json_scan import warm_up as warm_up_decoder
    from streaming.wire.partitioning import partitions_of
    from streaming.wire.record_blocks import warm_up as warm_up_reader
    from streaming.wire.resp import warm_up as warm_up_commands

    (
        warm_up_windows(),
        warm_up_encoder(),
        warm_up_commands(),
        warm_up_decoder(),
        warm_up_reader(),
        warm_up_keys(),
        partitions_of(["warm-up"], 1),
    )
    _preloaded = True


_preloaded = False
