"""The training set: every booking, its features as they were just before it, and its price.

The entity frame has one row per booking (item, customer, the item's category) stamped one
microsecond before the booking's event time: the booking's own feature rows are written at its
event time and count its price, and a live quote never sees the booking it is pricing. Features
come from the model's feature service through Feast's point-in-time join, or through the
equivalent as-of join (``asof.py``), the default: Feast's join compares each booking with every
earlier row of its key, and category rows are keyed by only seven categories, so a 60,000-booking
history already took over five minutes. A test proves the two joins return the same rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rental.settings import Settings
from streaming.features.store import FEATURE_SERVICE, feature_store
from streaming.tables import History, TableError, history_paths, load_history
from training.asof import asof_join
from training.service import ServiceSpec, TrainingDataError, service_spec

ENGINES = ("asof", "feast")
LABEL = "price_per_day"
EXPECTED = "expected_price_per_day"  # simulated data only: the true mean price (the noise floor)
BOOKING_COLUMNS = ["booking_id", "event_time", "rental_start", "rental_days", LABEL]
ONE_US = pd.Timedelta(microseconds=1)


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


def read_history(settings: Settings) -> History:
    paths = history_paths(settings.history_dir)
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise TrainingDataError(
            f"no booking history in {settings.history_dir} (missing {', '.join(missing)}): "
            "run `rental simulate history` or `rental history load ...`"
        )
    try:
        history = load_history(*paths)
    except TableError as exc:
        raise TrainingDataError(f"the booking history does not load: {exc}") from None
    if history.bookings.empty:
        raise TrainingDataError(f"the booking history in {settings.history_dir} has no bookings to learn from")
    return history


def entity_frame(history: History) -> pd.DataFrame:
    """One row per booking: join keys, the time features are read at, and what evaluation needs."""
    bookings = history.bookings
    columns = BOOKING_COLUMNS + ([EXPECTED] if EXPECTED in bookings and bookings[EXPECTED].notna().all() else [])
    frame = bookings[["item_id", "customer_id", *columns]].merge(
        history.items[["item_id", "category"]], on="item_id", how="left", validate="many_to_one"
    )
    frame["event_timestamp"] = pd.to_datetime(frame["event_time"], utc=True) - ONE_US
    frame["quote_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame


def check_offline_store(spec: ServiceSpec) -> None:
    for view in spec.views:
        folder = Path(view.path.split("**")[0])
        if not any(folder.glob("**/*.parquet")):
            raise TrainingDataError(
                f"the offline store has no {view.name} files in {folder}: run `rental features backfill`"
            )


def join_features(settings: Settings, entity: pd.DataFrame, spec: ServiceSpec, engine: str) -> pd.DataFrame:
    """``entity`` with the service's features, in the entity's order, by Feast or by as-of join."""
    if engine == "asof":
        return asof_join(entity, spec, threads=settings.train_nthread)
    keys = entity[[*spec.join_keys, "event_timestamp"]].assign(_row=range(len(entity)))
    job = feature_store(settings).get_historical_features(entity_df=keys, features=spec.service)
    got = job.to_df().sort_values("_row").set_index("_row")
    got.index = entity.index
    return pd.concat([entity, got[[f for v in spec.views for f in v.features]]], axis=1)


def build_training_set(settings: Settings, engine: str | None = None, history: History | None = None) -> TrainingSet:
    """Every booking of the history with its point-in-time features (engine: settings.train_engine)."""
    engine = engine or settings.train_engine
    if engine not in ENGINES:
        raise TrainingDataError(f"unknown engine {engine!r}; use one of {ENGINES}")
    history = history if history is not None else read_history(settings)
    spec = service_spec(feature_store(settings), FEATURE_SERVICE)
    check_offline_store(spec)
    entity = entity_frame(history)
    frame = join_features(settings, entity, spec, engine)
    frame = frame.sort_values(["event_time", "booking_id"], kind="stable").reset_index(drop=True)
    return TrainingSet(frame, spec, engine)
