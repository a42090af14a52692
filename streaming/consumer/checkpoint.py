"""Window state saved per stage and partition, next to the offset it is valid for.

A checkpoint is written before the partition's offset is committed to Kafka, so after a crash
the checkpoint is never older than the committed offset: the consumer resumes from the
checkpoint's offset with exactly the state those events produced. Files are written under a
temporary name, synced and renamed, so a crash never leaves half a checkpoint.

The files hold data only, so whoever can write the data directory cannot make a stage run
code by it. A file is ``MAGIC``, the header's length (8 bytes, little-endian), a JSON header
(orjson: the format's version, each array's dtype, shape and offset, and the state's shape as
dicts, lists, tuples, strings, numbers and datetimes referring to arrays by index), then the
arrays' raw bytes, each at a multiple of 8 bytes. Only plain numeric dtypes are read, each
array in one ``readinto``. The backfill state of 20,000 items and 200,000 bookings (45 MB)
saves in ~60 ms and loads in 30-35 ms, as its pickle did (62-65, 34-40); as an ``.npz`` it
took 66-79 and 54-65 ms (zip's CRC over every byte, chunked copies). Checkpoints sit on the
consumer's hot path, the one ending a catch-up is what the stage waits for last; no
compression, for the same reason.
"""

from __future__ import annotations

import os
import shutil
import threading
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from rental.settings import Settings

MAGIC = b"RNTSTATE"
FORMAT = "rental-stream-state"
VERSION = 1
SUFFIX = ".state"
BACKFILL = "backfill" + SUFFIX
_OLD_SUFFIX = ".pkl"  # the earlier, pickled checkpoints: refused, never loaded
_PLAIN_KINDS = "biuf"  # booleans, integers, floats: nothing that can hold a Python object


class StateFormatError(ValueError):
    """A state file that this code will not read (an older format, or not a state file)."""


def _path(settings: Settings, group: str, topic: str, partition: int) -> Path:
    return settings.state_dir / group / f"{topic}-{partition}{SUFFIX}"


def _aligned(n: int) -> int:
    return -(-n // 8) * 8


def _encode(value, arrays: list[np.ndarray]):
    """The JSON node of ``value``; arrays go to ``arrays``, the node holding their index.

    Tagged as [kind, payload] where JSON alone would not round-trip (tuples, arrays, datetimes,
    dicts, lists); strings, ints, floats, booleans and None are themselves."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"cannot save an array of Python objects ({value.dtype}) in a state file")
        arrays.append(np.ascontiguousarray(value))
        return ["array", len(arrays) - 1]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("a state file's dicts must have string keys")
        return ["dict", {key: _encode(item, arrays) for key, item in value.items()}]
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        if all(type(item) is str for item in value):  # entity keys: one flat JSON list, no walk
            return [kind + "/str", list(value)]
        return [kind, [_encode(item, arrays) for item in value]]
    if isinstance(value, datetime):
        return ["datetime", value.isoformat()]
    raise TypeError(f"cannot save a {type(value).__name__} in a state file")


def _decode(node, arrays: list[np.ndarray]):
    if not isinstance(node, list):
        return node
    kind, payload = node
    if kind == "array":
        return arrays[payload]
    if kind == "dict":
        return {key: _decode(item, arrays) for key, item in payload.items()}
    if kind == "list/str":
        return payload
    if kind == "tuple/str":
        return tuple(payload)
    if kind == "list":
        return [_decode(item, arrays) for item in payload]
    if kind == "tuple":
        return tuple(_decode(item, arrays) for item in payload)
    if kind == "datetime":
        return datetime.fromisoformat(payload)
    raise StateFormatError(f"unknown node kind {kind!r}")


def _write(path: Path, payload: dict) -> None:
    arrays: list[np.ndarray] = []
    node = _encode(payload, arrays)
    layout, at = [], 0
    for array in arrays:
        layout.append({"dtype": array.dtype.str, "shape": list(array.shape), "offset": at})
        at += _aligned(array.nbytes)
    header = orjson.dumps({"format": FORMAT, "version": VERSION, "arrays": layout, "payload": node})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + len(header).to_bytes(8, "little") + header + bytes(_aligned(len(header)) - len(header)))
        for array in arrays:
            f.write(memoryview(array.reshape(-1)).cast("B"))  # no copy: the bytes as they lie in memory
            f.write(bytes(_aligned(array.nbytes) - array.nbytes))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _refuse(path: Path, why: str, remedy: str) -> StateFormatError:
    return StateFormatError(f"{path}: {why}; it is not loaded. {remedy}")


def _read(path: Path, remedy: str) -> dict | None:
    """The saved payload, or None if there is none. Never unpickles: a file that is not this
    format (an old pickled checkpoint among them) is refused with ``remedy`` in the message."""
    old = path.with_suffix(_OLD_SUFFIX)
    if not path.exists():
        if old.exists():
            raise _refuse(old, "a state file in the old pickle format (a pickle can run code when read)", remedy)
        return None
    with open(path, "rb") as f:
        start = f.read(len(MAGIC) + 8)
        if start[: len(MAGIC)] != MAGIC:
            kind = (
                "a pickle (the old format, which can run code when read)"
                if start[:1] == b"\x80"
                else "not a state file"
            )
            raise _refuse(path, kind, remedy)
        size = os.fstat(f.fileno()).st_size
        header_len = int.from_bytes(start[len(MAGIC) :], "little")
        if header_len > size:
            raise _refuse(path, "a truncated state file", remedy)
        try:
            header = orjson.loads(f.read(header_len))
        except orjson.JSONDecodeError as exc:
            raise _refuse(path, f"an unreadable state header ({exc})", remedy) from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise _refuse(path, "not a state file of this kind", remedy)
        if header.get("version") != VERSION:
            raise _refuse(path, f"state format version {header.get('version')}, this code reads {VERSION}", remedy)
        data_start = len(MAGIC) + 8 + _aligned(header_len)
        try:
            arrays = [_read_array(f, data_start, size, entry) for entry in header["arrays"]]
            return _decode(header["payload"], arrays)
        except StateFormatError as exc:
            raise _refuse(path, str(exc), remedy) from exc
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise _refuse(path, f"a malformed state file ({exc!r})", remedy) from exc


def _read_array(f, data_start: int, size: int, entry: dict) -> np.ndarray:
    dtype = np.dtype(entry["dtype"])
    if dtype.kind not in _PLAIN_KINDS or dtype.hasobject or dtype.fields is not None:
        raise StateFormatError(f"array of dtype {dtype} (only plain numbers are read)")
    out = np.empty([int(n) for n in entry["shape"]], dtype)
    begin = data_start + int(entry["offset"])
    if begin < data_start or begin + out.nbytes > size:
        raise StateFormatError("an array runs past the end of the file (truncated)")
    f.seek(begin)
    if f.readinto(memoryview(out.reshape(-1)).cast("B")) != out.nbytes:
        raise StateFormatError("an array runs past the end of the file (truncated)")
    return out


def _checkpoint_remedy(settings: Settings, group: str) -> str:
    return (
        f"Delete {settings.state_dir / group} to restart this stage from the backfill's state "
        "(or run `rental features backfill` to rebuild everything)."
    )


def save(settings: Settings, group: str, topic: str, partition: int, offset: int, state: dict) -> None:
    _write(_path(settings, group, topic, partition), {"offset": offset, "state": state})


def forget(settings: Settings, group: str) -> None:
    """Delete every partition's saved state of ``group``."""
    shutil.rmtree(settings.state_dir / group, ignore_errors=True)


def load(settings: Settings, group: str, topic: str, partition: int) -> dict | None:
    return _read(_path(settings, group, topic, partition), _checkpoint_remedy(settings, group))


def save_backfill(settings: Settings, as_of: datetime, state: dict) -> Path:
    """The backfill's final state: where consumers without a checkpoint of their own begin."""
    path = settings.state_dir / BACKFILL
    _write(path, {"as_of": as_of, "state": state})
    return path


def load_backfill(settings: Settings) -> dict | None:
    return _read(settings.state_dir / BACKFILL, "Run `rental features backfill` to write it again.")


class BackgroundSaver:
    """Writes a checkpoint from a forked child, as Redis's BGSAVE does.

    Saving every window of 100,000 items takes up to a second and a Parquet append a few
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
