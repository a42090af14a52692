"""The things features describe: an item, a customer, a category (``streaming/feature_store/views.py``)."""

from feast import Entity, ValueType

from streaming.feature_store.views import CATEGORY, CUSTOMER, ITEM
from streaming.feature_store.views import Entity as Declared


def _entity(declared: Declared) -> Entity:
    return Entity(
        name=declared.name,
        join_keys=[declared.join_key],
        value_type=ValueType.STRING,  # every join key holds a string id
        description=declared.description,
    )


item = _entity(ITEM)
customer = _entity(CUSTOMER)
category = _entity(CATEGORY)
ENTITIES = {entity.name: entity for entity in (item, customer, category)}
