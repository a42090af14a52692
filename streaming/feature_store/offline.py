"""The Parquet offline store: one folder per feature view, partitioned by day, append-only.

Every write is a new file, stored whole (``rental/storage.py``: a local file is written under a
temporary name and renamed, an S3 object is one PUT under its final name), so a reader (Feast's
DuckDB store, a training job) never sees half a file and no growing file is ever rewritten. The
store is ``settings.offline_uri``: the data directory's ``offline/`` or ``<RENTAL_STORAGE_URI>/offline``.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rental.settings import Settings
from rental.storage import LocalFolder, S3Folder, open_folder
from streaming.feature_store.views import EVENT_TIMESTAMP, FLOAT, INT, STRING, TIMESTAMP, VIEWS

WRITER_THREADS = 4
RECENT_DAYS = 2  # the days of a write that get a partition each; older rows are grouped by month
# A stream's checkpoint files live a day, until compaction rewrites the day as one zstd file.
# lz4 writes them with ~30% less CPU than zstd (1.05 against 1.50 s for a catch-up checkpoint of
# 1.2 million rows in 365 day files), for files ~40% larger: a checkpoint that ends a catch-up
# is the last thing the consumer waits for.
STREAM_COMPRESSION = "lz4"
# Arrow types of each view's columns (``views.py``), so every file of a view has the same schema.
TS = pa.timestamp("us", tz="UTC")
ARROW_TYPES = {INT: pa.int64(), FLOAT: pa.float64(), STRING: pa.string(), TIMESTAMP: TS}
SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([(column, ARROW_TYPES[kind]) for column, kind in view.columns.items()])
    for name, view in VIEWS.items()
}


def offline_folder(settings: Settings) -> LocalFolder | S3Folder:
    return open_folder(settings.offline_uri, settings.s3_endpoint_url)


def view_dir(settings: Settings, view: str) -> Path:
    """A view's folder in a local store (``view_glob`` names it wherever the store is)."""
    return settings.offline_dir / view


def view_glob(settings: Settings, view: str) -> str:
    """The absolute glob (or ``s3://`` URI glob) Feast's DuckDB store reads a partitioned view through."""
    return offline_folder(settings).uri_of(view, "**", "*.parquet")


def to_table(view: str, rows: list[dict] | pd.DataFrame | pa.Table) -> pa.Table:
    """Rows (an engine's table or dicts, times as integer microseconds, or a frame) as the
    view's Arrow table."""
    schema = SCHEMAS[view]
    if isinstance(rows, pa.Table):
        return rows.select(schema.names).cast(schema)
    if isinstance(rows, pd.DataFrame):
        return pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)
    return pa.Table.from_pylist(rows, schema=schema)


def _write_parquet(table: pa.Table, path: pa.NativeFile | str, compression: str = "zstd") -> None:
    """zstd unless told (files that are kept), and dictionaries only for the string columns
    (entity keys, attributes): on the numeric features, mostly distinct values, a dictionary
    was wasted work; leaving it out cut a catch-up checkpoint's CPU by a sixth and its files'
    size by a tenth."""
    strings = [field.name for field in table.schema if pa.types.is_string(field.type)]
    pq.write_table(table, path, compression=compression, use_dictionary=strings)


def _partitions(day: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Each row's partition (an integer key) and each key's folder value.

    The last ``RECENT_DAYS`` days of the rows get a folder a day; older days, a folder a month
    (``date=YYYY-MM``). A live checkpoint touches one or two days, so nothing changes there; a
    consumer catching up (or a backfill) touches hundreds, and a file costs ~1 ms of CPU however
    few its rows: a year of history was 365 files a view per checkpoint, now 14 or so. Old
    months are closed, so compaction merges each once, as it does a closed day."""
    recent = day >= day.max() - (RECENT_DAYS - 1)
    month = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    key = np.where(recent, day, -1 - month)  # months below zero: never equal to a day
    labels = {}
    for k in np.unique(key).tolist():
        at = np.datetime64(k, "D") if k >= 0 else np.datetime64(-1 - k, "M")
        labels[k] = str(at)  # 2026-03-05, or 2026-03
    return key, labels


def write_rows(settings: Settings, view: str, rows: list[dict] | pd.DataFrame | pa.Table, tag: str,
               compression: str = "zstd") -> list[str]:  # fmt: skip
    """Append rows as one new file per partition touched (``_partitions``); ``tag`` names the
    writer (e.g. a stage). Returns the files' paths (or URIs)."""
    if len(rows) == 0:
        return []
    table = to_table(view, rows)
    key, labels = _partitions(table[EVENT_TIMESTAMP].cast(pa.int64()).to_numpy() // 86_400_000_000)
    order = None
    if (key[1:] != key[:-1]).sum() >= len(labels):  # one reorder (rows keep their order within a partition)
        order = np.argsort(key, kind="stable")
        key = key[order]
    change = np.flatnonzero(key[1:] != key[:-1]) + 1  # each partition's rows are now one run
    starts, ends = np.concatenate([[0], change]), np.append(change, len(key))
    folder = offline_folder(settings)
    targets = [f"{view}/date={labels[k]}/{tag}-{uuid.uuid4().hex[:12]}.parquet" for k in key[starts].tolist()]

    def write(i: int) -> str:
        # A partition's rows gathered as it is written, not the whole table reordered first: a
        # year caught up in one checkpoint would hold a second copy of every row.
        part = (table.slice(starts[i], ends[i] - starts[i]) if order is None
                else table.take(order[starts[i] : ends[i]]))  # fmt: skip
        return folder.write(targets[i], lambda sink: _write_parquet(part, sink, compression))

    if len(targets) == 1:
        return [write(0)]
    # Catching up touches a partition a month and a day or two, and a small file costs ~1 ms of
    # mostly per-file work that releases the GIL: written by a few threads side by side.
    with ThreadPoolExecutor(max_workers=min(WRITER_THREADS, len(targets))) as pool:
        return list(pool.map(write, range(len(targets))))


def view_files(settings: Settings, view: str) -> list[str]:
    """The view's Parquet files, relative to the store, in path order."""
    return offline_folder(settings).files(view)


def read_view(settings: Settings, view: str) -> pd.DataFrame:
    folder = offline_folder(settings)
    files = folder.files(view)
    if not files:
        return pa.Table.from_pylist([], schema=SCHEMAS[view]).to_pandas()
    return pa.concat_tables([folder.read_table(f, SCHEMAS[view]) for f in files]).to_pandas()


def clear(settings: Settings) -> None:
    """Delete the whole offline store (a backfill replaces it)."""
    offline_folder(settings).delete_all()


def _closes(partition: str) -> date:
    """The first day after a partition's days: ``2026-03-05`` closes on 03-06, ``2026-03`` on 04-01."""
    if len(partition) == len("2026-03"):
        first = date.fromisoformat(f"{partition}-01")
        return date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return date.fromisoformat(partition) + timedelta(days=1)


def compact(settings: Settings, before: date, views: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """Merge each closed partition's files of a view into one (a day's, or an old month's, all
    before ``before``); view -> (files merged, files written).

    A streaming writer adds a file per view at every checkpoint, some thousands a day, and a
    reader (DuckDB, a training job) pays for every file it opens. Days before ``before`` are
    rewritten as one file: it is stored whole (renamed in, or one S3 PUT), then exactly the
    files that went into it are deleted. A reader in between sees some rows twice, identical
    rows, which a point-in-time join resolves to the same value; a file a late writer adds to
    the day meanwhile is not touched and stays.
    """
    folder = offline_folder(settings)
    done = {}
    for view in views or list(SCHEMAS):
        merged = written = 0
        for day_dir in folder.folders(view, "date="):
            if _closes(day_dir.rsplit("/", 1)[-1].removeprefix("date=")) > before:
                continue
            files = folder.files(day_dir, "*.parquet")
            if len(files) < 2:
                continue
            table = pa.concat_tables([folder.read_table(f, SCHEMAS[view]) for f in files])
            key = VIEWS[view].join_key
            frame = table.to_pandas().drop_duplicates().sort_values([key, EVENT_TIMESTAMP], kind="stable")
            merged_table = to_table(view, frame)
            folder.write(f"{day_dir}/compacted-{uuid.uuid4().hex[:12]}.parquet",
                         lambda sink, t=merged_table: _write_parquet(t, sink))  # fmt: skip
            folder.delete(files)
            merged, written = merged + len(files), written + 1
        done[view] = (merged, written)
    return done
