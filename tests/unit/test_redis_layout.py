"""Entity keys built by hand are byte for byte the keys Feast's own serialiser gives."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from streaming.feature_store.redis_layout import EntityKeys

IDS = ["item_000001", "cust_0140108", "", "dress", "é" * 300, "a b\tc", "💃" * 70]


@pytest.mark.parametrize("join_key", ["item_id", "customer_id", "category"])
def test_keys_equal_feasts(join_key):
    config = SimpleNamespace(project="rental_pricing", entity_key_serialization_version=3)
    keys = EntityKeys(config)
    for entity in IDS:
        proto = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=entity)])
        assert keys(join_key, entity) == _redis_key("rental_pricing", proto, 3)
    assert keys._heads[join_key] is not None  # the hand-built layout was used, not the fallback
