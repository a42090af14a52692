"""The exact feature list the model uses, pinned once for training and for serving."""

from feast import FeatureService
from features import FEATURE_VIEWS

from streaming.feature_store.views import FEATURE_SERVICE, SERVICE_VIEWS

rental_price_v1 = FeatureService(
    name=FEATURE_SERVICE,
    features=[FEATURE_VIEWS[view] for view in SERVICE_VIEWS],
    description="Everything the rental-price model reads; training and serving both use this service.",
)
