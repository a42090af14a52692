"""The training set: every booking, its features as they were just before it, and its price.

The entity rows are the bookings (item, customer, the item's category) stamped one microsecond
before the booking's event time: the booking's own feature rows are written at its event time
and count its price, and a live quote never sees the booking it is pricing. Features come from
the model's feature service through Feast's point-in-time join, or through the equivalent as-of
join (``asof.py``), the default: Feast's join compares each booking with every earlier row of
its key, and category rows are keyed by only seven categories, so a 60,000-booking history
already took over five minutes. A test proves the two joins return the same rows.

The history is read by DuckDB straight from its Parquet (``streaming/history/tables.py`` writes it with
the schema's exact Arrow types): the entity rows, the join and the sort run in one query, and
the result reaches pandas through Arrow, strings as categoricals, with no per-row Python. A
history that does not have the schema's types, or fails the checks training relies on (prices,
rental days, times, ids, items and customers known), goes through ``load_history``'s full
validation instead, which names the bad rows.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rental.settings import Settings
from rental.storage import open_folder
from streaming.feature_store import FEATURE_SERVICE, feature_store
from streaming.history.tables import BOOKINGS, ITEMS, History, TableError, history_paths, load_history
from training.asof import arrow_to_frame, asof_features, connect
from training.feature_spec import ServiceSpec, TrainingDataError, service_spec

ENGINES = ("asof", "feast")
LABEL = "price_per_day"
EXPECTED = "expected_price_per_day"  # simulated data only: the true mean price (the noise floor)
BOOKING_COLUMNS = ["booking_id", "event_time", "rental_start", "rental_days", LABEL]
ONE_US = pd.Timedelta(microseconds=1)
# What training relies on, checked in one scan before the fast path is trusted.
_CHECKS = f"""
SELECT count(*) AS rows,
       count(*) FILTER (WHERE {LABEL} IS NULL OR NOT {LABEL} > 0 OR rental_days IS NULL OR rental_days < 1
                        OR event_time IS NULL OR rental_start IS NULL OR booking_id IS NULL) AS bad,
       count(*) - count(DISTINCT booking_id) AS duplicates,
       count(*) FILTER (WHERE i.item_id IS NULL) AS unknown_items,
       count(*) FILTER (WHERE c.customer_id IS NULL) AS unknown_customers
FROM bookings b
LEFT JOIN (SELECT DISTINCT item_id FROM items) i USING (item_id)
LEFT JOIN (SELECT DISTINCT customer_id FROM customers) c USING (customer_id)
"""


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # one row per booking, in event-time order
    service: ServiceSpec
    engine: str

    @property
    def digest(self) -> str:
        """sha256 of every column the model and its evaluation read: same digest, same data."""
        hashed = pd.util.hash_pandas_object(self.frame.drop(columns="event_timestamp"), index=False)
        return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()


def _missing_history(settings: Settings) -> None:
    missing = [p.name for p in history_paths(settings.history_dir) if not p.exists()]
    if missing:
        raise TrainingDataError(
            f"no booking history in {settings.history_dir} (missing {', '.join(missing)}): "
            "run `rental simulate history` or `rental history load ...`"
        )


def read_history(settings: Settings) -> History:
    """The history through ``load_history``'s full validation (every row, every column)."""
    _missing_history(settings)
    try:
        history = load_history(*history_paths(settings.history_dir))
    except TableError as exc:
        raise TrainingDataError(f"the booking history does not load: {exc}") from None
    if history.bookings.empty:
        raise TrainingDataError(f"the booking history in {settings.history_dir} has no bookings to learn from")
    return history


def _has_schema_types(path: Path, table) -> bool:
    schema = pq.read_schema(path)
    expected = table.arrow_schema(schema.names)
    needed = [c.name for c in table.columns if c.required]
    return all(n in schema.names for n in needed) and all(schema.field(f.name).type == f.type for f in expected)


@contextmanager
def _history_tables(settings: Settings, history: History | None, threads: int):
    """A DuckDB connection with views ``bookings``, ``items`` and ``customers`` over the history."""
    con = connect(threads)
    try:
        if history is None:
            _missing_history(settings)
            items, customers, bookings = history_paths(settings.history_dir)
            trusted = _has_schema_types(items, ITEMS) and _has_schema_types(bookings, BOOKINGS)
            if trusted:
                for name, path in (("items", items), ("customers", customers), ("bookings", bookings)):
                    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
                rows, bad, duplicates, unknown_items, unknown_customers = con.sql(_CHECKS).fetchall()[0]
                trusted = not (bad or duplicates or unknown_items or unknown_customers)
                if rows == 0:
                    raise TrainingDataError(
                        f"the booking history in {settings.history_dir} has no bookings to learn from"
                    )
            if not trusted:  # the full validation, which names each bad row (or sets none aside)
                history = read_history(settings)
        if history is not None:
            for name in ("items", "customers", "bookings"):
                con.register(name, getattr(history, name))
        yield con
    finally:
        con.close()


def _entity_sql(con: duckdb.DuckDBPyConnection) -> str:
    columns = {c[0] for c in con.sql("DESCRIBE bookings").fetchall()}
    expected = f", b.{EXPECTED}" if EXPECTED in columns else ""
    if expected and con.sql(f"SELECT count(*) FROM bookings WHERE {EXPECTED} IS NULL").fetchall()[0][0]:
        expected = ""  # only a fully simulated history has a noise floor
    return f"""
        SELECT b.item_id, b.customer_id, b.booking_id, b.event_time::TIMESTAMPTZ AS event_time,
               b.rental_start::DATE AS rental_start, b.rental_days::BIGINT AS rental_days,
               b.{LABEL}::DOUBLE AS {LABEL}{expected}, i.category,
               b.event_time::TIMESTAMPTZ - INTERVAL 1 MICROSECOND AS event_timestamp,
               b.event_time::TIMESTAMPTZ AS quote_time
        FROM bookings b LEFT JOIN items i USING (item_id)
    """


def entity_frame(history: History, threads: int = 2) -> pd.DataFrame:
    """One row per booking: join keys, the time features are read at, and what evaluation needs."""
    with _history_tables(None, history, threads) as con:  # type: ignore[arg-type]
        return arrow_to_frame(con.sql(_entity_sql(con) + " ORDER BY b.event_time, b.booking_id").to_arrow_table())


def check_offline_store(spec: ServiceSpec, endpoint_url: str | None = None) -> None:
    for view in spec.views:
        folder = open_folder(view.path.split("/**")[0], endpoint_url)
        if not folder.files():
            raise TrainingDataError(
                f"the offline store has no {view.name} files in {folder.uri}: run `rental features backfill`"
            )


def _feast_join(settings: Settings, entity: pd.DataFrame, spec: ServiceSpec) -> pd.DataFrame:
    keys = entity[[*spec.join_keys, "event_timestamp"]].assign(_row=range(len(entity)))
    for key in spec.join_keys:  # Feast compares keys as plain strings
        keys[key] = keys[key].astype(object)
    job = feature_store(settings).get_historical_features(entity_df=keys, features=spec.service)
    got = job.to_df().sort_values("_row").set_index("_row")
    got.index = entity.index
    return pd.concat([entity, got[[f for v in spec.views for f in v.features]]], axis=1)


def join_features(settings: Settings, entity: pd.DataFrame, spec: ServiceSpec, engine: str) -> pd.DataFrame:
    """``entity`` with the service's features, in the entity's order, by Feast or by as-of join."""
    if engine == "asof":
        from training.asof import asof_join

        return asof_join(entity, spec, threads=settings.train_nthread, endpoint_url=settings.s3_endpoint_url)
    return _feast_join(settings, entity, spec)


def build_training_set(settings: Settings, engine: str | None = None, history: History | None = None) -> TrainingSet:
    """Every booking of the history with its point-in-time features (engine: settings.train_engine)."""
    engine = engine or settings.train_engine
    if engine not in ENGINES:
        raise TrainingDataError(f"unknown engine {engine!r}; use one of {ENGINES}")
    with _history_tables(settings, history, settings.train_nthread) as con:
        spec = service_spec(feature_store(settings), FEATURE_SERVICE)
        check_offline_store(spec, settings.s3_endpoint_url)
        entity = con.sql(_entity_sql(con) + " ORDER BY b.event_time, b.booking_id").to_arrow_table()
        if engine == "asof":
            keys = entity.select([*spec.join_keys, "event_timestamp"])
            features = asof_features(con, keys, spec, settings.s3_endpoint_url)
            frame = arrow_to_frame(
                pa.table([*entity.columns, *features.columns], [*entity.column_names, *features.column_names])
            )
        else:
            frame = _feast_join(settings, arrow_to_frame(entity), spec)
    if frame.empty:
        raise TrainingDataError(f"the booking history in {settings.history_dir} has no bookings to learn from")
    return TrainingSet(frame.reset_index(drop=True), spec, engine)
