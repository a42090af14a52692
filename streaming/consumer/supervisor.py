"""Runs several consumer stages, one process each, and stops them together.

The supervisor never touches events: it loads what a stage needs once, forks one process per
stage (each runs as ``rental stream features --stages <one>`` would), forwards SIGTERM/Ctrl-C,
stops everything if a stage fails, and, for ``--until-idle``,
watches each stage's consumer group lag in Kafka (committed offsets against end offsets):
once every group has caught up and stayed so, it stops the stages, which checkpoint and exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.consumer.errors import StartRefused
from streaming.consumer.stages import stages as all_stages
from streaming.consumer.usage import cpu_s, peak_rss_mb

if TYPE_CHECKING:
    from streaming.consumer.runtime import StageInputs

console = Console(stderr=True)


class GroupLag:
    """Events not yet checkpointed, per stage: end offsets minus the group's committed offsets."""

    def __init__(self, settings: Settings, names: list[str]):
        defined = all_stages(settings)
        self.groups = {name: (defined[name].group(settings), defined[name].topic) for name in names}
        self.admin = KafkaAdminClient(**kafka_options(settings), client_id="features-supervisor")
        self.offsets = KafkaConsumer(**kafka_options(settings), client_id="features-supervisor")

    def lag(self) -> dict[str, int]:
        """Two requests for all stages (end offsets, then committed offsets): asked twice a
        second, one round per group cost the supervisor a tenth of a core."""
        partitions = {
            name: [TopicPartition(topic, p) for p in sorted(self.offsets.partitions_for_topic(topic) or ())]
            for name, (_, topic) in self.groups.items()
        }
        ends = self.offsets.end_offsets([tp for tps in partitions.values() for tp in tps])
        committed = self.admin.list_group_offsets({group: None for group, _ in self.groups.values()})
        out = {}
        for name, (group, _) in self.groups.items():
            mine = committed.get(group, {})
            out[name] = sum(max(0, ends[tp] - (mine[tp].offset if tp in mine else 0)) for tp in partitions[name])
        return out

    def stable(self) -> bool:
        """Every stage's group has members and a settled assignment (the consumer is up)."""
        try:
            described = self.admin.describe_groups([group for group, _ in self.groups.values()])
        except KafkaError:  # e.g. no group coordinator yet on a fresh broker: not up yet
            return False
        return all(d.get("group_state") == "Stable" and d.get("members") for d in described.values())

    def close(self) -> None:
        self.admin.close()
        self.offsets.close()


class StageProcess:
    """One stage in a child forked from the supervisor (``subprocess.Popen``'s interface, as
    much of it as the supervisor uses): the child starts with Feast, Kafka's client and the
    compiled kernels already loaded instead of spending seconds of CPU loading them again."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    @classmethod
    def fork(cls, settings: Settings, name: str, stats_json: Path, inputs: StageInputs) -> StageProcess:
        pid = os.fork()
        if pid:
            return cls(pid)
        code = 1
        try:  # the child: run the stage, then leave without running the parent's clean-up
            from streaming.consumer.runtime import run_one

            run_one(settings, name, None, None, stats_json, inputs)
            code = 0
        except StartRefused as exc:  # what to do, not a traceback
            console.print(f"[red]{name}: not started: {exc}[/red]")
            code = 2
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"stage {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _table(lags: dict[str, int], procs: dict[str, StageProcess], started: float) -> Table:
    table = Table(title=f"feature consumer ({time.monotonic() - started:,.0f} s)")
    for column in ("stage", "pid", "state", "events not yet checkpointed"):
        table.add_column(column, justify="right")
    for name, proc in procs.items():
        state = "running" if proc.poll() is None else f"exited {proc.returncode}"
        table.add_row(name, str(proc.pid), state, f"{lags.get(name, 0):,}")
    return table


def supervise(settings: Settings, names: list[str], max_seconds: float | None, until_idle: float | None,
              show: bool, stats_json: Path | None) -> int:  # fmt: skip
    """Run the stages; return the exit code (0 when every stage stopped cleanly)."""
    unknown = [n for n in names if n not in all_stages(settings)]
    if unknown:
        console.print(f"[red]unknown stage(s) {unknown}; known: {list(all_stages(settings))}[/red]")
        return 2
    stats_dir = Path(tempfile.mkdtemp(prefix="stream-stats-"))
    # Here, not at the top: watching lag (``GroupLag``, the demo's) needs none of a stage's runtime.
    from streaming.consumer.runtime import StageInputs, preload

    preload()  # once here, before any thread or client exists: every stage forks from it
    inputs = StageInputs.load(settings)
    procs = {name: StageProcess.fork(settings, name, stats_dir / f"{name}.json", inputs) for name in names}
    stop = {"requested": False}
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.update(requested=True))
    lag = GroupLag(settings, names)
    started, idle_since, lags, code, drained_at = time.monotonic(), None, {}, 0, None
    live = Live(_table(lags, procs, started), console=console, refresh_per_second=2) if show else None
    if live:
        live.start()
    try:
        while not stop["requested"]:
            time.sleep(0.25)
            failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
            if failed:
                console.print(
                    f"[red]stage {failed[0]} exited with {procs[failed[0]].returncode}; stopping the others[/red]"
                )
                code = 1
                break
            if all(p.poll() == 0 for p in procs.values()):
                break
            try:
                lags = lag.lag()
            except KafkaError as exc:  # a group coordinator moving, a busy broker: the stages go on
                console.print(f"[yellow]lag not read this time ({type(exc).__name__}); asking again[/yellow]")
                continue
            if live:
                live.update(_table(lags, procs, started))
            now = time.monotonic()
            if max_seconds is not None and now - started >= max_seconds:
                break
            if any(lags.values()):
                drained_at = None
            elif drained_at is None:
                drained_at = time.time()  # every event so far is written and committed
            if until_idle is not None:
                idle_since = (idle_since or now) if not any(lags.values()) else None
                if idle_since is not None and now - idle_since >= until_idle:
                    break
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in procs.items():
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                console.print(f"[red]stage {name} did not stop in 120 s; killing it[/red]")
                p.kill()
            if p.returncode not in (0, -signal.SIGTERM):
                code = code or 1
        lag.close()
        if live:
            live.update(_table(lags, procs, started))
            live.stop()
    if stats_json:
        # Loading Feast once, then watching lag.
        supervisor = {"supervisor_cpu_s": round(cpu_s(), 1), "supervisor_peak_rss_mb": peak_rss_mb()}
        stats_json.write_text(json.dumps(_merge(stats_dir, names, drained_at) | supervisor))
    return code


def _merge(stats_dir: Path, names: list[str], drained_at: float | None) -> dict:
    """Stages ran in parallel: busy time runs from the first record any stage read to the moment
    every group's committed offset reached the end (committed = features written). That moment
    is the last commit that moved an offset, as the stage timed it; the lag seen at zero
    (``drained_at``, polled every 0.25 s) confirms it was the last."""
    parts = [json.loads((stats_dir / f"{n}.json").read_text()) for n in names if (stats_dir / f"{n}.json").exists()]
    firsts = [p["first_record"] for p in parts if p.get("first_record")]
    start = min(firsts) if firsts else None
    commits = [p.get("last_commit") for p in parts]
    end = max(commits) if drained_at and commits and None not in commits else drained_at
    return {
        "busy_s": (end - start) if start and end else None,
        "events": {k: v for p in parts for k, v in p["events"].items()},
        "duplicates": sum(p["duplicates"] for p in parts),
        "dead_letters": sum(p["dead_letters"] for p in parts),
        "peak_rss_mb": {n: p["peak_rss_mb"] for n, p in zip(names, parts, strict=False)},
        "pids": {n: p.get("pid") for n, p in zip(names, parts, strict=False)},
        "cpu_s": {n: round(p["cpu_s"], 1) for n, p in zip(names, parts, strict=False)},
        "checkpoint_cpu_s": {n: round(p["checkpoint_cpu_s"], 1) for n, p in zip(names, parts, strict=False)},
        # When each stage read its first and last record and made its last commit that moved an
        # offset, in seconds from the first record any stage read: which stage ends the run.
        "stage_timeline_s": {
            n: {k: round(p[k] - start, 2) for k in ("first_record", "last_record", "last_commit") if p.get(k)}
            for n, p in zip(names, parts, strict=False)
        }
        if start
        else {},
        # Each stage on its own: its events over its first-to-last record (the other stages ran
        # beside it on the same cores).
        "stage_events_per_s": {
            k: round(v / (p["last_record"] - p["first_record"]))
            for p in parts
            if p.get("first_record") and p["last_record"] > p["first_record"]
            for k, v in p["events"].items()
        },
    }
