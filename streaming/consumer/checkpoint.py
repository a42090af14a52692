"""Window state saved per stage and partition, next to the offset it is valid for.

A checkpoint is written before the partition's offset is committed to Kafka, so after a crash
the checkpoint is never older than the committed offset: the consumer resumes from the
checkpoint's offset with exactly the state those events produced. Files are written under a
temporary name, synced and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
import pickle
import threading
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rental.settings import Settings

BACKFILL = "backfill.pkl"


def _path(settings: Settings, group: str, topic: str, partition: int) -> Path:
    return settings.state_dir / group / f"{topic}-{partition}.pkl"


def _write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read(path: Path) -> dict | None:
    if not path.exists():
        return None
    with open(path, "rb") as f:
        return pickle.load(f)


def save(settings: Settings, group: str, topic: str, partition: int, offset: int, state: dict) -> None:
    _write(_path(settings, group, topic, partition), {"offset": offset, "state": state})


def load(settings: Settings, group: str, topic: str, partition: int) -> dict | None:
    return _read(_path(settings, group, topic, partition))


def save_backfill(settings: Settings, as_of: datetime, state: dict) -> Path:
    """The backfill's final state: where consumers without a checkpoint of their own begin."""
    path = settings.state_dir / BACKFILL
    _write(path, {"as_of": as_of, "state": state})
    return path


def load_backfill(settings: Settings) -> dict | None:
    return _read(settings.state_dir / BACKFILL)


class BackgroundSaver:
    """Writes a checkpoint from a forked child, as Redis's BGSAVE does.

    Pickling every window of 100,000 items takes about a second and a Parquet append a few
    hundred milliseconds; done in the consumer loop they stalled every update behind them. A
    fork gives the child a copy-on-write image of the rows and state at this instant, which it
    writes while the parent goes on consuming. ``then`` (the offset commit) runs in the parent
    only once the child has written everything, so the ordering rule (features written before
    offsets committed) holds. One checkpoint at a time, written in order.
    """

    def __init__(self, nice: int = 0):
        self._nice = nice  # the child's CPU priority below its parent's: it is background work
        self._child: tuple[int, Callable[[], None]] | None = None
        self._lock = threading.Lock()  # the rebalance callback waits from the client's IO thread

    def start(self, work: Callable[[], None], then: Callable[[], None]) -> None:
        self.wait()
        pid = os.fork()
        if pid == 0:  # the child: do the writes and leave, touching nothing else of the parent's
            code = 1
            try:
                os.nice(self._nice)
                work()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        self._child = (pid, then)

    @property
    def busy(self) -> bool:
        """A checkpoint is still being written (call ``poll`` first to notice one that ended)."""
        return self._child is not None

    def poll(self) -> None:
        """Non-blocking: if the save has finished, run its ``then``."""
        self._reap(os.WNOHANG)

    def wait(self, run_then: bool = True) -> None:
        """Block until the save in flight (if any) is written; ``run_then=False`` inside a
        rebalance callback, where the offset commit may not run."""
        self._reap(0, run_then)

    def _reap(self, flags: int, run_then: bool = True) -> None:
        with self._lock:
            if self._child is None:
                return
            pid, then = self._child
            done, status = os.waitpid(pid, flags)
            if done == 0:
                return
            self._child = None
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"saving the window state failed in process {pid} (exit {code}); offsets not committed")
        if run_then:
            then()
