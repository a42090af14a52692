"""The point-in-time join as DuckDB as-of joins over the offline store's own Parquet files.

Feast's join pairs each entity row with every earlier row of its key and keeps the latest, so
its cost grows with the square of a hot item's row count (35 s and 7 GB for a million skewed
bookings: "Measured facts" in docs/architecture.md). An as-of join finds the same latest row by
a sorted merge. The semantics are Feast's: the latest feature row at or before the entity time,
or nulls when that row is older than the view's ttl. ``tests/model/test_training_set.py`` checks the two agree.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from rental.storage import attach_s3, is_s3
from training.feature_spec import ServiceSpec

# Strings with more distinct values than this stay strings; the rest become categoricals.
MAX_DICTIONARY = 200_000


def connect(threads: int = 2) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _view_sql(spec: ServiceSpec, i: int, one_row_per_key: bool) -> str:
    """Each entity row's ``_row`` and the features of view ``i`` as of its ``event_timestamp``.
    A view with one row per key (static attributes) needs no as-of search: its row counts when it
    is at or before the entity time, a hash join with the same condition, and far cheaper."""
    view, alias = spec.views[i], f"v{i}"
    fresh = "TRUE"
    if view.ttl is not None:
        seconds = int(view.ttl.total_seconds())
        fresh = f"{alias}.event_timestamp + INTERVAL '{seconds} seconds' >= e.event_timestamp"
    selects = [f"CASE WHEN {fresh} THEN {alias}.{f} END AS {f}" for f in view.features]
    join = "LEFT JOIN" if one_row_per_key else "ASOF LEFT JOIN"
    return (
        f"SELECT e._row, {', '.join(selects)} FROM entity_keys e {join} view_rows {alias}"
        f" ON e.{view.join_key} = {alias}.{view.join_key} AND e.event_timestamp >= {alias}.event_timestamp"
    )


def _inverse(rows: np.ndarray) -> np.ndarray:
    """The positions that put rows numbered by a permutation back in order (no sort needed)."""
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = np.arange(len(rows), dtype=np.int64)
    return order


def asof_features(
    con: duckdb.DuckDBPyConnection, keys: pa.Table, spec: ServiceSpec, endpoint_url: str | None = None
) -> pa.Table:
    """Every feature of the service for each row of ``keys`` (the join keys and
    ``event_timestamp``), in the rows' order. One narrow as-of join per view: carrying the
    other views' columns through every join's sort would cost several times more. Views on S3
    are read through s3fs (``endpoint_url``: an S3-compatible server), since DuckDB's httpfs
    extension cannot be counted on."""
    if any(is_s3(view.path) for view in spec.views):
        attach_s3(con, endpoint_url)
    con.register("entity_keys", keys.append_column("_row", pa.array(range(keys.num_rows), pa.int64())))
    try:
        names, columns = [], []
        for i, view in enumerate(spec.views):
            columns_sql = ", ".join([view.join_key, "event_timestamp", *view.features])
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE view_rows AS SELECT {columns_sql}"
                f" FROM read_parquet('{view.path}', hive_partitioning = false)"
            )
            rows, keys_ = con.sql(f"SELECT count(*), count(DISTINCT {view.join_key}) FROM view_rows").fetchall()[0]
            got = con.sql(_view_sql(spec, i, one_row_per_key=rows == keys_)).to_arrow_table()
            got = got.take(_inverse(got.column("_row").to_numpy()))  # back to the entity's order
            names += list(view.features)
            columns += [got.column(f) for f in view.features]
    finally:
        con.unregister("entity_keys")
        con.execute("DROP TABLE IF EXISTS view_rows")
    return pa.table(columns, names=names)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas without per-row Python: strings become categoricals (ids with nearly one
    value per row stay Arrow strings), integers nullable Int64, dates datetime64."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            distinct = len(column.unique()) if len(column) else 0
            if distinct <= MAX_DICTIONARY:
                column = column.dictionary_encode()
        columns.append(column)
    table = pa.table(columns, names=table.column_names)

    def types(arrow_type):
        if pa.types.is_integer(arrow_type):
            return pd.Int64Dtype()
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return pd.ArrowDtype(arrow_type)
        return None

    return table.to_pandas(types_mapper=types, date_as_object=False, self_destruct=True, split_blocks=True)


def asof_join(
    entity: pd.DataFrame, spec: ServiceSpec, threads: int = 2, endpoint_url: str | None = None
) -> pd.DataFrame:
    """``entity`` (join keys, ``event_timestamp`` in UTC, any other columns) with every feature of
    the service, one row per entity row, in the entity's order."""
    keys = pa.table({k: pa.array(entity[k].astype(object), pa.string()) for k in spec.join_keys})
    keys = keys.append_column("event_timestamp", pa.array(pd.to_datetime(entity["event_timestamp"], utc=True)))
    con = connect(threads)
    try:
        features = arrow_to_frame(asof_features(con, keys, spec, endpoint_url))
    finally:
        con.close()
    features.index = entity.index
    return pd.concat([entity, features], axis=1)
