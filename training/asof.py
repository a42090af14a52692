"""The point-in-time join as DuckDB as-of joins over the offline store's own Parquet files.

Feast's join pairs each entity row with every earlier row of its key and keeps the latest, so
its cost grows with the square of a hot item's row count (35 s and 7 GB for a million skewed
bookings, DESIGN.md). An as-of join finds the same latest row by a sorted merge. The semantics
are Feast's: the latest feature row at or before the entity time, or nulls when that row is
older than the view's ttl. ``tests/integration/test_training_set.py`` checks the two agree.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from training.service import ServiceSpec


def asof_join(entity: pd.DataFrame, spec: ServiceSpec, threads: int = 2) -> pd.DataFrame:
    """``entity`` (join keys, ``event_timestamp`` in UTC, any other columns) with every feature of
    the service, one row per entity row, in the entity's order."""
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {int(threads)}")
        con.execute("SET TimeZone = 'UTC'")
        con.register("entity_rows", entity.assign(_row=range(len(entity))))
        selects, joins = [], []
        for i, view in enumerate(spec.views):
            alias = f"v{i}"
            fresh = "TRUE"
            if view.ttl is not None:
                seconds = int(view.ttl.total_seconds())
                fresh = f"{alias}.event_timestamp + INTERVAL '{seconds} seconds' >= e.event_timestamp"
            selects += [f"CASE WHEN {fresh} THEN {alias}.{f} END AS {f}" for f in view.features]
            columns = ", ".join([view.join_key, "event_timestamp", *view.features])
            joins.append(
                f"ASOF LEFT JOIN (SELECT {columns} FROM read_parquet('{view.path}', hive_partitioning = false)) {alias}"
                f" ON e.{view.join_key} = {alias}.{view.join_key} AND e.event_timestamp >= {alias}.event_timestamp"
            )
        sql = f"SELECT e._row, {', '.join(selects)} FROM entity_rows e {' '.join(joins)}"
        features = con.execute(sql).df().sort_values("_row").set_index("_row")
    finally:
        con.close()
    features.index = entity.index
    return pd.concat([entity, features], axis=1)
