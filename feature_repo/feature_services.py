"""The exact feature list the model uses, pinned once for training and for serving."""

from feast import FeatureService
from features import category_season, customer_attributes, customer_history, item_attributes, item_popularity

rental_price_v1 = FeatureService(
    name="rental_price_v1",
    features=[item_attributes, item_popularity, category_season, customer_history, customer_attributes],
    description="Everything the rental-price model reads; training and serving both use this service.",
)
