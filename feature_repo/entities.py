"""The things features describe: an item, a customer, a category."""

from feast import Entity, ValueType

item = Entity(
    name="item", join_keys=["item_id"], value_type=ValueType.STRING, description="A listing in the catalogue."
)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING, description="A renter.")
category = Entity(
    name="category", join_keys=["category"], value_type=ValueType.STRING, description="dress, gown, outerwear, ..."
)
