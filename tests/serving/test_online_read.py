"""The serving reader gives exactly what Feast's ``get_online_features`` gives, row for row."""

from __future__ import annotations

import pandas as pd
import pytest
import redis as redis_py

from streaming.feature_store.online_read import OnlineReader, as_of
from streaming.feature_store.store import feature_store
from tests.worlds.serving_world import NEW_ITEM

pytestmark = pytest.mark.integration


def test_the_reader_equals_get_online_features_for_every_item(world):
    store = feature_store(world.settings)
    service = store.get_feature_service("rental_price_v1")
    reader = OnlineReader(store, redis_py.Redis.from_url(world.settings.redis_url), service)
    catalogue = pd.read_parquet(world.settings.history_dir / "items.parquet", columns=["item_id", "category"])
    category = dict(zip(catalogue["item_id"], catalogue["category"], strict=True))
    items = [*category, "no_such_item"]
    customers = [*world.customers, "no_such_customer"]
    rows = [{"item_id": item, "customer_id": customers[k % len(customers)], "category": category.get(item, "none")}
            for k, item in enumerate(items)]  # fmt: skip
    assert NEW_ITEM in category and len(rows) > 300

    for start in range(0, len(rows), 100):  # batches of the size /predict_batch allows
        chunk = rows[start : start + 100]
        response = store.get_online_features(features=service, entity_rows=chunk, full_feature_names=False)
        expected = response.to_dict()
        got = reader.read(chunk)
        assert set(got.columns) == set(expected) - {"item_id", "customer_id", "category"}
        for name, values in got.columns.items():
            assert values == expected[name], name
        proto = response.proto
        stamps = {}
        for name, result in zip(proto.metadata.feature_names.val, proto.results, strict=True):
            stamps[name] = [ts.seconds + ts.nanos / 1e9 for ts in result.event_timestamps]
        newest = [max(stamps[n][k] for n in got.columns) for k in range(len(chunk))]
        assert [t.timestamp() if t else 0.0 for t in as_of(got.stamps, len(chunk))] == pytest.approx(newest)

    unknown = reader.read([rows[-1]])
    assert all(s == [0.0] for view, s in unknown.stamps.items() if view.startswith("item"))
    assert unknown.columns["bookings_7d"] == [None] and unknown.columns["brand"] == [None]
