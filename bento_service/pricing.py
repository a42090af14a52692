"""A quote, whatever the protocol: online features + request-time features -> XGBoost -> price.

HTTP and gRPC both call ``Pricer.quote`` on the one instance of their process, so the same
request gets the same price over both. The request-time features (lead days, season, item age,
...) are computed inside ``PricePredictor.predict`` by ``training.request_features``, the
function training uses.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from bento_service.features import FeaturesUnavailable, OnlineFeatures
from bento_service.model import ModelHolder
from bento_service.prediction_log import PredictionLog
from rental.settings import Settings


class Unavailable(RuntimeError):
    """A dependency the quote needs is down (no model, no online features): HTTP 503 / UNAVAILABLE."""


@dataclass(frozen=True)
class QuoteInput:
    item_id: str
    customer_id: str | None
    rental_start: date
    rental_days: int


@dataclass
class Priced:
    quotes: list[dict]  # the fields of ``schemas.Quote``, in request order (known items only)
    not_found: list[str]


class Pricer:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.currency = settings.currency
        self.model = ModelHolder(settings)
        self.features = OnlineFeatures(settings)
        self.log = PredictionLog(settings)

    def start(self) -> None:
        self.model.start()
        self.log.start()

    def close(self) -> None:
        self.model.stop()
        self.log.close()

    def quote(self, requests: list[QuoteInput], protocol: str, started: float | None = None) -> Priced:
        """``started``: ``time.perf_counter()`` when the request arrived (for the logged latency)."""
        started = time.perf_counter() if started is None else started
        predictor = self.model.current  # read once: this request's model, whatever reloads meanwhile
        if predictor is None:
            raise Unavailable(f"no model is loaded ({self.model.error or 'still loading'})")
        items = [r.item_id for r in requests]
        try:
            fetched = self.features.fetch(predictor.feature_service_name, items, [r.customer_id for r in requests])
        except FeaturesUnavailable as exc:
            raise Unavailable(str(exc)) from None
        known = [k for k, found in enumerate(fetched.known) if found]
        not_found = [items[k] for k, found in enumerate(fetched.known) if not found]
        if not known:
            return Priced([], not_found)
        columns = fetched.columns
        if len(known) < len(requests):
            columns = {name: [values[k] for k in known] for name, values in columns.items()}
        now = datetime.now(UTC)
        columns |= {
            "rental_start": [requests[k].rental_start for k in known],
            "rental_days": [requests[k].rental_days for k in known],
            "quote_time": [now] * len(known),
        }
        prices = predictor.predict(columns)
        quotes, latency_ms = [], (time.perf_counter() - started) * 1e3
        for j, k in enumerate(known):
            request, per_day = requests[k], round(float(prices[j]), 2)
            quote = {
                "item_id": request.item_id, "price_per_day": per_day,
                "total_price": round(per_day * request.rental_days, 2), "currency": self.currency,
                "model_version": predictor.version or "", "features_as_of": fetched.as_of[k],
                "degraded": fetched.degraded[k], "cold_start": fetched.cold_start[k], "request_id": uuid.uuid4().hex,
            }  # fmt: skip
            quotes.append(quote)
            self.log.publish(quote | {
                "quoted_at": now, "protocol": protocol, "customer_id": request.customer_id,
                "rental_start": request.rental_start, "rental_days": request.rental_days, "latency_ms": latency_ms,
                "features": {name: columns[name][j] for name in predictor.feature_names if name in columns},
            })  # fmt: skip
        return Priced(quotes, not_found)

    def health(self) -> dict:
        redis = self.features.ping()
        model = self.model.current
        status = "ok" if model is not None and redis and self.log.connected else "degraded"
        if model is None or not redis:
            status = "unavailable"
        return {
            "status": status, "model_version": model.version if model else None, "model_error": self.model.error,
            "redis": redis, "kafka": self.log.connected, "predictions_logged": self.log.logged,
            "predictions_pending": self.log.pending, "predictions_unlogged": self.log.unlogged,
        }  # fmt: skip

    def ready(self) -> bool:
        return self.model.current is not None and self.features.ping()
