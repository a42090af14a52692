"""The stream's online writer never drops an update, even one stamped before the stored row."""

from __future__ import annotations

import pyarrow as pa
import pytest
import redis as redis_py
from feast import FeatureStore

from rental.settings import Settings
from streaming.feature_store.online_write import OnlineWriter, _timestamp_us
from streaming.feature_store.store import apply, feature_store

pytestmark = pytest.mark.integration

DAY_US = 86_400 * 1_000_000


def _row(at_us: int, bookings: int) -> pa.Table:
    return pa.Table.from_pylist([{"item_id": "item_x", "event_timestamp": at_us, "bookings_7d": bookings, "bookings_30d": bookings,
            "revenue_7d": 10.0 * bookings, "revenue_30d": 10.0 * bookings, "avg_price_30d": None,
            "utilisation_30d": 0.1, "cancellations_30d": 0, "last_booking_at": at_us}])  # fmt: skip


def _rows(at_us: int, bookings: int, items: int) -> pa.Table:
    one = _row(at_us, bookings)
    return pa.concat_tables([one.set_column(0, "item_id", pa.array([f"item_{i}"])) for i in range(items)])


def _empty_store(tmp_path, settings) -> tuple[Settings, redis_py.Redis, FeatureStore]:
    """The feature repo applied in ``tmp_path``, over an emptied Redis db of its own."""
    local = Settings(data_dir=tmp_path, REDIS_URL=settings.redis_url.rsplit("/", 1)[0] + "/6")
    stored = redis_py.Redis.from_url(local.redis_url)
    stored.flushdb()
    apply(local)
    return local, stored, feature_store(local)


def test_a_recomputed_row_stamped_earlier_still_replaces_the_stored_one(tmp_path, settings):
    local, stored, store = _empty_store(tmp_path, settings)
    writer = OnlineWriter(store, local)
    features = ["item_popularity:bookings_7d", "item_popularity:avg_price_30d"]

    def read():
        return store.get_online_features(features=features, entity_rows=[{"item_id": "item_x"}]).to_dict()

    writer.write("item_popularity", _row(1000 * DAY_US, 3))
    writer.flush()
    assert read()["bookings_7d"] == [3] and read()["avg_price_30d"] == [None]
    # After a restart the same entity's newest state can carry an earlier stamp: it must win.
    writer.write("item_popularity", _row(999 * DAY_US, 5))
    writer.flush()
    assert read()["bookings_7d"] == [5]
    assert len(stored.keys()) == 1


def test_a_restarted_writer_reads_the_stored_stamps_and_still_replaces_the_rows(tmp_path, settings):
    local, stored, store = _empty_store(tmp_path, settings)
    first = OnlineWriter(store, local)
    first.write("item_popularity", _rows(1000 * DAY_US, 3, 25))
    first.close()
    # A new process knows no stamps: it reads them (one pipelined HGET a key), then stamps after them.
    second = OnlineWriter(store, local)
    key = second._redis_key("item_id", "item_7")
    stored.set(key, b"not a hash")
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        second.write("item_popularity", _rows(999 * DAY_US, 5, 8).slice(7))
    stored.delete(key)
    # Its rows are lost to Redis: the writer stays failed, so its stage cannot checkpoint past them.
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        second.write("item_popularity", _rows(999 * DAY_US, 5, 25))
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        second.close()
    second = OnlineWriter(store, local)  # the restarted stage's writer
    second.write("item_popularity", _rows(999 * DAY_US, 5, 25))
    second.flush()
    entity_rows = [{"item_id": f"item_{i}"} for i in range(25)]
    read = store.get_online_features(features=["item_popularity:bookings_7d"], entity_rows=entity_rows).to_dict()
    assert read["bookings_7d"] == [5] * 25
    keys = [second._redis_key("item_id", f"item_{i}") for i in range(25)]
    stamps = [_timestamp_us(stored.hget(key, "_ts:item_popularity")) for key in keys]
    # Just after the stored stamp, so time stays monotonic; item_7's row was deleted: its own stamp.
    assert stamps == [999 * DAY_US if i == 7 else 1000 * DAY_US + 1 for i in range(25)]
    second.close()


def test_a_refused_write_raises_with_redis_reason_and_the_writer_stays_failed(tmp_path, settings):
    local, stored, store = _empty_store(tmp_path, settings)
    writer = OnlineWriter(store, local)
    writer.write("item_popularity", _row(1000 * DAY_US, 2))
    writer.flush()
    key = writer._redis_key("item_id", "item_x")
    stored.set(key, b"not a hash")  # the writer knows the key: its next write goes straight to HSET
    writer.write("item_popularity", _row(1001 * DAY_US, 3))  # queued: the refusal comes with the flush
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        writer.flush()
    stored.delete(key)
    # A lost write is final: nothing later may be confirmed, or a checkpoint would cover the loss.
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        writer.write("item_popularity", _row(1002 * DAY_US, 4))
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        writer.flush()
    writer = OnlineWriter(store, local)  # the restarted stage's writer
    writer.write("item_popularity", _row(1002 * DAY_US, 4))
    writer.flush()
    read = store.get_online_features(features=["item_popularity:bookings_7d"], entity_rows=[{"item_id": "item_x"}])
    assert read.to_dict()["bookings_7d"] == [4]
