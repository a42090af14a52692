"""Window state saved per stage and partition, next to the offset it is valid for.

A checkpoint is written before the partition's offset is committed to Kafka, so after a crash
the checkpoint is never older than the committed offset: the consumer resumes from the
checkpoint's offset with exactly the state those events produced. Files are written under a
temporary name, synced and renamed, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import os
import pickle
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
