"""What survives a restart: the join's state and the offsets it is valid for.

A checkpoint numbered n is a few Arrow IPC files (``<n>.<part>.arrow``: the open quotes, the
request ids seen, the bookings and cancellations kept) and, written last, ``checkpoint.json``
naming n with the offsets, the watermark and the counters. Every file is written under a
temporary name, synced and renamed, so the JSON file is the commit point: a crash before it
leaves the previous checkpoint whole (and its stray files are deleted at the next save).
Only data formats are read back, never pickle.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
import pyarrow as pa

from monitoring.log.join import Booking, Ledger, Rules
from monitoring.log.records import QUOTE_KEY_FIELDS
from rental.settings import Settings

FORMAT, VERSION = "rental-monitor-state", 1
POINTER = "checkpoint.json"


class StateError(RuntimeError):
    """Saved state this code will not use; the message says what to do."""


@dataclass
class Checkpoint:
    seq: int
    offsets: dict[tuple[str, int], int]  # (topic, partition) -> next offset to read
    ledger: Ledger
    counters: Counter = field(default_factory=Counter)  # the consumer's own (records, rejected, ...)


def state_dir(settings: Settings) -> Path:
    return settings.monitor_log_dir / "state"


def lock(settings: Settings) -> IO:
    """Hold the log's lock for as long as the returned file is open: one writer per log."""
    folder = state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / "LOCK", "a+")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StateError(f"another `rental monitor run` is writing {settings.monitor_log_dir}: one writer per log "
                         "(stop it, or give this one its own RENTAL_MONITOR_DIR)") from None  # fmt: skip
    return handle


def _write_file(path: Path, data: bytes | pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        if isinstance(data, pa.Table):
            with pa.ipc.new_file(f, data.schema) as writer:
                writer.write_table(data)
        else:
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _tables(ledger: Ledger) -> dict[str, pa.Table]:
    open_rows = list(ledger.open.values())
    opened = {name: [row[i] for row in open_rows] for i, name in enumerate(QUOTE_KEY_FIELDS)}
    opened["late"] = [row[0] in ledger.late for row in open_rows]
    seen = list(ledger.seen_order)
    events = list(ledger.event_order)
    bookings = [(item, b) for item, kept in ledger.bookings.items() for b in kept]
    return {
        "open": pa.table({
            "request_id": pa.array(opened["request_id"], pa.string()),
            "quoted_us": pa.array(opened["quoted_us"], pa.int64()),
            "item_id": pa.array(opened["item_id"], pa.string()),
            "customer_id": pa.array(opened["customer_id"], pa.string()),
            "category": pa.array(opened["category"], pa.string()),
            "model_version": pa.array(opened["model_version"], pa.string()),
            "rental_days": pa.array(opened["rental_days"], pa.int32()),
            "price_per_day": pa.array(opened["price_per_day"], pa.float64()),
            "late": pa.array(opened["late"], pa.bool_()),
        }),
        "seen": pa.table({"quoted_us": pa.array([s[0] for s in seen], pa.int64()),
                          "request_id": pa.array([s[1] for s in seen], pa.string())}),
        "events": pa.table({"event_us": pa.array([e[0] for e in events], pa.int64()),
                            "event_id": pa.array([e[1] for e in events], pa.string()),
                            "item_id": pa.array([e[2] for e in events], pa.string())}),
        "bookings": pa.table({
            "item_id": pa.array([item for item, _ in bookings], pa.string()),
            "event_us": pa.array([b.event_us for _, b in bookings], pa.int64()),
            "event_id": pa.array([b.event_id for _, b in bookings], pa.string()),
            "booking_id": pa.array([b.booking_id for _, b in bookings], pa.string()),
            "customer_id": pa.array([b.customer_id for _, b in bookings], pa.string()),
            "price_per_day": pa.array([b.price_per_day for _, b in bookings], pa.float64()),
        }),
        "cancels": pa.table({"booking_id": pa.array(list(ledger.cancels), pa.string()),
                             "event_us": pa.array(list(ledger.cancels.values()), pa.int64())}),
    }  # fmt: skip


def save(settings: Settings, checkpoint: Checkpoint) -> None:
    folder = state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    seq, ledger = checkpoint.seq, checkpoint.ledger
    for name, table in _tables(ledger).items():
        _write_file(folder / f"{seq:010d}.{name}.arrow", table)
    pointer = {
        "format": FORMAT, "version": VERSION, "seq": seq, "saved_at": time.time(),
        "offsets": [[topic, partition, offset] for (topic, partition), offset in sorted(checkpoint.offsets.items())],
        "watermark": ledger.watermark.value, "newest": ledger.watermark.newest,
        "window_us": ledger.rules.window_us, "open_quotes": len(ledger.open),
        "join_counters": dict(ledger.counters), "counters": dict(checkpoint.counters),
    }  # fmt: skip
    _write_file(folder / POINTER, orjson.dumps(pointer))
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for path in folder.glob("*.arrow"):  # the previous checkpoint's files, and any a crash left
        if not path.name.startswith(f"{seq:010d}."):
            path.unlink(missing_ok=True)


def read_pointer(settings: Settings) -> dict | None:
    """The last checkpoint's summary (offsets, watermark, counters), or None before the first."""
    path = state_dir(settings) / POINTER
    if not path.exists():
        return None
    try:
        pointer = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise StateError(f"{path}: unreadable ({exc}); {_remedy(settings)}") from exc
    if not isinstance(pointer, dict) or pointer.get("format") != FORMAT or pointer.get("version") != VERSION:
        raise StateError(f"{path}: not a prediction-log checkpoint of version {VERSION}; {_remedy(settings)}")
    return pointer


def _remedy(settings: Settings) -> str:
    return (f"delete {settings.monitor_log_dir} to rebuild the log from the topics "
            f"(and reset the consumer group {settings.monitor_group_id!r} if it has committed offsets)")  # fmt: skip


def _read_table(path: Path, settings: Settings) -> pa.Table:
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise StateError(f"{path}: unreadable ({exc}); {_remedy(settings)}") from exc


def load(settings: Settings, rules: Rules, now: float) -> Checkpoint | None:
    pointer = read_pointer(settings)
    if pointer is None:
        return None
    seq, folder = int(pointer["seq"]), state_dir(settings)
    tables = {name: _read_table(folder / f"{seq:010d}.{name}.arrow", settings).to_pylist()
              for name in ("open", "seen", "events", "bookings", "cancels")}  # fmt: skip
    ledger = Ledger(rules, now, pointer["watermark"], pointer["newest"])
    ledger.counters.update(pointer.get("join_counters", {}))
    for row in tables["open"]:
        ledger.open_quote(tuple(row[name] for name in QUOTE_KEY_FIELDS))
        if row["late"]:
            ledger.late.add(row["request_id"])
    for row in tables["seen"]:
        ledger.seen[row["request_id"]] = row["quoted_us"]
        ledger.seen_order.append((row["quoted_us"], row["request_id"]))
    for row in tables["events"]:
        ledger.booking_events[row["event_id"]] = row["event_us"]
        ledger.event_order.append((row["event_us"], row["event_id"], row["item_id"]))
    for row in tables["bookings"]:
        booking = Booking(row["event_us"], row["event_id"], row["booking_id"], row["customer_id"], row["price_per_day"])
        ledger.bookings.setdefault(row["item_id"], []).append(booking)
    ledger.cancels = {row["booking_id"]: row["event_us"] for row in tables["cancels"]}
    offsets = {(topic, int(partition)): int(offset) for topic, partition, offset in pointer["offsets"]}
    return Checkpoint(seq, offsets, ledger, Counter(pointer.get("counters", {})))
