"""A quote, whatever the protocol: online features + request-time features -> XGBoost -> price.

HTTP and gRPC both go through the one ``Pricer`` of their process (via ``QuoteBatcher``), so
the same request gets the same price over both. The request-time features (lead days, season, item age,
...) are computed inside ``PricePredictor.predict`` by ``training.predictor.request_features``, the
function training uses.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from bento_service.champion import ModelHolder
from bento_service.online_features import FeaturesUnavailable, OnlineFeatures
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


@dataclass(frozen=True)
class Ask:
    """One HTTP or gRPC request: its items, and when it arrived (``time.perf_counter()``)."""

    requests: list[QuoteInput]
    protocol: str
    started: float


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
        self.requests_priced = self.pricing_calls = 0

    def start(self) -> None:
        self.model.start()
        self.log.start()

    def close(self) -> None:
        self.model.stop()
        self.log.close()

    def quote(self, requests: list[QuoteInput], protocol: str, started: float | None = None) -> Priced:
        """``started``: ``time.perf_counter()`` when the request arrived (for the logged latency)."""
        started = time.perf_counter() if started is None else started
        return self.quote_asks([Ask(requests, protocol, started)])[0]

    def quote_asks(self, asks: list[Ask]) -> list[Priced]:
        """Several requests priced together: one feature read and one model call for all their
        items (the fixed cost of each is most of a single quote's), a ``Priced`` per ask."""
        predictor = self.model.current  # read once: these requests' model, whatever reloads meanwhile
        if predictor is None:
            raise Unavailable(f"no model is loaded ({self.model.error or 'still loading'})")
        self.requests_priced, self.pricing_calls = self.requests_priced + len(asks), self.pricing_calls + 1
        requests = [r for ask in asks for r in ask.requests]
        if not requests:  # an empty batch: nothing to read or price
            return [Priced([], []) for _ in asks]
        items = [r.item_id for r in requests]
        try:
            fetched = self.features.fetch(predictor.feature_service_name, items, [r.customer_id for r in requests])
        except FeaturesUnavailable as exc:
            raise Unavailable(str(exc)) from None
        known = [k for k, found in enumerate(fetched.known) if found]
        columns = fetched.columns
        if len(known) < len(requests):
            columns = {name: [values[k] for k in known] for name, values in columns.items()}
        now = datetime.now(UTC)
        columns |= {
            "rental_start": [requests[k].rental_start for k in known],
            "rental_days": [requests[k].rental_days for k in known],
            "quote_time": [now] * len(known),
        }
        prices = iter(predictor.predict(columns) if known else ())
        done, logged, k, j = time.perf_counter(), predictor.feature_names, 0, 0
        out = []
        for ask in asks:
            quotes, not_found, latency_ms = [], [], (done - ask.started) * 1e3
            for request in ask.requests:
                if not fetched.known[k]:
                    not_found.append(request.item_id)
                    k += 1
                    continue
                per_day = round(float(next(prices)), 2)
                quote = {
                    "item_id": request.item_id, "price_per_day": per_day,
                    "total_price": round(per_day * request.rental_days, 2), "currency": self.currency,
                    "model_version": predictor.version or "", "features_as_of": fetched.as_of[k],
                    "degraded": fetched.degraded[k], "cold_start": fetched.cold_start[k],
                    "request_id": uuid.uuid4().hex,
                }  # fmt: skip
                quotes.append(quote)
                self.log.publish(quote | {
                    "quoted_at": now, "protocol": ask.protocol, "customer_id": request.customer_id,
                    "rental_start": request.rental_start, "rental_days": request.rental_days,
                    "latency_ms": latency_ms, "features": {name: columns[name][j] for name in logged if name in columns},
                })  # fmt: skip
                k, j = k + 1, j + 1
            out.append(Priced(quotes, not_found))
        return out

    def health(self) -> dict:
        redis = self.features.ping()
        model = self.model.current
        kafka = self.log.reachable
        status = "ok" if model is not None and redis and kafka else "degraded"
        if model is None or not redis:
            status = "unavailable"
        return {
            "status": status, "model_version": model.version if model else None, "model_error": self.model.error,
            "redis": redis, "kafka": kafka, "predictions_logged": self.log.logged,
            "predictions_pending": self.log.pending, "predictions_unlogged": self.log.unlogged,
            "requests_priced": self.requests_priced, "pricing_calls": self.pricing_calls,
        }  # fmt: skip

    def ready(self) -> bool:
        return self.model.current is not None and self.features.ping()
