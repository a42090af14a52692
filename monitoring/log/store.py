"""The log's Parquet parts: written idempotently, read back through one function per table.

A checkpoint numbered n writes at most one part per table and day, ``part-<n>.parquet``, under a
temporary name, synced, then renamed. A crash before the checkpoint's state is saved leaves parts
numbered past the saved one; the restart deletes them (``remove_after``) and its replay writes
the same rows again under the same numbers, so a row is never in two parts. Each part is small
(one checkpoint's rows); a day of them is read in one pass (``read``).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from monitoring.log.records import OUTCOME_COLUMNS, QUOTE_COLUMNS, REJECTED_COLUMNS, to_table
from rental.settings import Settings

TABLES = {  # table -> (its fixed columns, the column its days are named by)
    "quotes": (QUOTE_COLUMNS, "quote_date"),
    "outcomes": (OUTCOME_COLUMNS, "quote_date"),
    "rejected": (REJECTED_COLUMNS, "received_date"),
}
_PART = re.compile(r"part-(\d{10})\.parquet")


def table_dir(settings: Settings, table: str) -> Path:
    return settings.monitor_log_dir / table


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parts(settings: Settings, seq: int, table: str, rows: list[dict]) -> int:
    """``rows`` as part ``seq`` of each day they fall on; returns the number of parts written."""
    if not rows:
        return 0
    columns, day_column = TABLES[table]
    days: dict[str, list[dict]] = {}
    for row in rows:
        days.setdefault(row[day_column], []).append(row)
    for day, day_rows in days.items():
        folder = table_dir(settings, table) / f"{day_column}={day}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{seq:010d}.parquet"
        tmp = folder / f".{path.name}.tmp"
        with open(tmp, "wb") as f:
            pq.write_table(to_table(day_rows, columns), f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    return len(days)


def _parts(settings: Settings, table: str) -> list[tuple[int, Path]]:
    out = []
    for path in table_dir(settings, table).glob("*=*/*.parquet"):
        match = _PART.fullmatch(path.name)
        if match:
            out.append((int(match.group(1)), path))
    return out


def has_parts(settings: Settings) -> bool:
    return any(_parts(settings, table) for table in TABLES)


def remove_after(settings: Settings, seq: int) -> int:
    """Delete the parts of checkpoints after ``seq`` (never saved) and stray temporary files;
    return how many parts went."""
    removed = 0
    for table in TABLES:
        for tmp in table_dir(settings, table).glob("*=*/.part-*.tmp"):
            tmp.unlink(missing_ok=True)
        for n, path in _parts(settings, table):
            if n > seq:
                path.unlink()
                removed += 1
    return removed


def _as_utc(moment: datetime | date) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table from parts whose feature columns may differ (absent, or a number in one part and
    text in another: then text)."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        kinds: dict[str, set] = {}
        for t in tables:
            for field in t.schema:
                kinds.setdefault(field.name, set()).add(field.type)
        mixed = {name for name, types in kinds.items() if len({ty for ty in types if ty != pa.null()}) > 1}
        fixed = []
        for t in tables:
            for name in mixed & set(t.column_names):
                i = t.column_names.index(name)
                t = t.set_column(i, name, t.column(name).cast(pa.string()))
            fixed.append(t)
        return pa.concat_tables(fixed, promote_options="permissive")


def read(settings: Settings, table: str, start: datetime | date | None = None, end: datetime | date | None = None,
         on: str | None = None, days_before: timedelta = timedelta(0)) -> pd.DataFrame:  # fmt: skip
    """Rows of ``table`` with ``on`` (a timestamp column) in [start, end), as a pandas frame sorted
    by it. Only the days that can hold them are read: those of [start - days_before, end]."""
    columns = TABLES[table][0]
    on = on or ("received_at" if table == "rejected" else "quoted_at")
    low = None if start is None else _as_utc(start)
    high = None if end is None else _as_utc(end)
    first_day = None if low is None else (low - days_before).date().isoformat()
    last_day = None if high is None else high.date().isoformat()
    tables = []
    for _, path in sorted(_parts(settings, table), key=lambda p: (p[1].parent.name, p[0])):
        day = path.parent.name.split("=", 1)[1]
        if (first_day and day < first_day) or (last_day and day > last_day):
            continue
        tables.append(pq.read_table(path))
    if not tables:
        return to_table([], columns).to_pandas()
    frame = _concat(tables).to_pandas()
    if low is not None:
        frame = frame[frame[on] >= low]
    if high is not None:
        frame = frame[frame[on] < high]
    return frame.sort_values(on, kind="stable").reset_index(drop=True)
