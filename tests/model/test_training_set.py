"""The training set is point-in-time correct, and the as-of join returns exactly what Feast does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streaming.feature_store.offline import SCHEMAS, write_rows
from streaming.feature_store.store import FEATURE_SERVICE, feature_store
from training.dataset import build_training_set, entity_frame, join_features, read_history
from training.feature_spec import TrainingDataError, service_spec

from .conftest import make_world

pytestmark = pytest.mark.integration
POISON = 987_654


@pytest.fixture(scope="module")
def probe_world(tmp_path_factory, settings):
    return make_world(tmp_path_factory.mktemp("leak"), settings, seed=9, items=60, bookings=1_500)


def _row(view: str, key: str, at: pd.Timestamp, column: str, value: int) -> list[dict]:
    """One offline row of ``view`` for ``key`` at ``at``, with ``column`` = ``value``, the rest null."""
    row = {f.name: None for f in SCHEMAS[view]}
    return [row | {SCHEMAS[view].names[0]: key, "event_timestamp": at.value // 1_000, column: value}]


@pytest.mark.parametrize("engine", ["asof", "feast"])
def test_a_value_written_after_a_booking_never_reaches_its_row(probe_world, engine):
    """Rows stamped at the booking's own time and later are poison; one just before is seen."""
    bookings = read_history(probe_world).bookings
    target = bookings.iloc[len(bookings) // 2]
    t = pd.Timestamp(target["event_time"])
    item, customer = target["item_id"], target["customer_id"]
    for offset in (pd.Timedelta(0), pd.Timedelta(microseconds=1), pd.Timedelta(hours=1)):
        write_rows(
            probe_world, "item_popularity", _row("item_popularity", item, t + offset, "bookings_7d", POISON), "probe"
        )
        write_rows(probe_world, "customer_history",
                   _row("customer_history", customer, t + offset, "customer_bookings_365d", POISON), "probe")  # fmt: skip
    frame = build_training_set(probe_world, engine).frame
    row = frame.loc[frame["booking_id"] == target["booking_id"]].iloc[0]
    assert row["bookings_7d"] != POISON
    assert row["customer_bookings_365d"] != POISON
    # positive control: a row one microsecond before the booking is what the booking sees
    before = t - pd.Timedelta(microseconds=2)
    write_rows(probe_world, "item_popularity", _row("item_popularity", item, before, "bookings_7d", 4242), "probe")
    frame = build_training_set(probe_world, engine).frame
    assert frame.loc[frame["booking_id"] == target["booking_id"], "bookings_7d"].iloc[0] == 4242


def test_asof_join_equals_feast_on_a_sample_with_nulls_past_the_ttl(world):
    store = feature_store(world)
    spec = service_spec(store, FEATURE_SERVICE)
    entity = entity_frame(read_history(world)).sample(400, random_state=3)
    # the same keys far in the future (every windowed row past its ttl) and long before listing
    future = entity.head(60).assign(event_timestamp=entity["event_timestamp"].max() + pd.Timedelta(days=800))
    past = entity.tail(40).assign(event_timestamp=pd.Timestamp("2020-01-01", tz="UTC"))
    entity = pd.concat([entity, future, past], ignore_index=True)
    feast = join_features(world, entity, spec, "feast")
    asof = join_features(world, entity, spec, "asof")
    features = [f for v in spec.views for f in v.features]
    assert feast["bookings_30d"].isna().sum() >= 60 and feast["customer_bookings_365d"].isna().sum() >= 60
    for name in features:
        a, b = asof[name], feast[name]
        np.testing.assert_array_equal(a.isna().to_numpy(), b.isna().to_numpy(), err_msg=f"nulls of {name}")
        present = a.notna().to_numpy()
        if pd.api.types.is_datetime64_any_dtype(b):
            np.testing.assert_array_equal(
                pd.to_datetime(a[present], utc=True).to_numpy(), pd.to_datetime(b[present], utc=True).to_numpy()
            )
        else:
            np.testing.assert_array_equal(a[present].to_numpy(object), b[present].to_numpy(object), err_msg=name)


def test_missing_history_or_offline_store_says_what_to_run(tmp_path, world):
    empty = world.model_copy(update={"data_dir": tmp_path})
    with pytest.raises(TrainingDataError, match="rental simulate history"):
        build_training_set(empty)
    history = read_history(world)
    with pytest.raises(TrainingDataError, match="rental features"):
        build_training_set(empty, history=history)
