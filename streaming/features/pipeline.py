"""Booking events in, feature rows out: the one path the live consumer and the backfill share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from streaming.features.definitions import category_season_spec, customer_history_spec, item_popularity_spec
from streaming.features.windows import DAY_US, Deduplicator, WindowEngine

CREATED, CANCELLED = "booking_created", "booking_cancelled"
DEDUP_HORIZON_US = 366 * DAY_US  # the longest window, and a day for late redeliveries


class UnknownItem(KeyError):
    """An event for an item the catalogue does not have."""


@dataclass(frozen=True)
class Catalogue:
    """What the features need to know about each item."""

    category: dict[str, str]
    retail: dict[str, int]  # whole pounds
    units: dict[str, int]

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> Catalogue:
        ids = items["item_id"].astype(str).tolist()
        units = items["units"] if "units" in items else pd.Series(1, index=items.index)
        return cls(
            category=dict(zip(ids, items["category"].astype(str), strict=True)),
            retail=dict(zip(ids, items["retail_price"].round().astype(int).tolist(), strict=True)),
            units=dict(zip(ids, units.astype(int).tolist(), strict=True)),
        )


def _event_key(event_id: str) -> int:
    """A compact, process-independent key for de-duplication (Python's str hash is salted)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


VIEWS = ("item_popularity", "category_season", "customer_history")


class FeaturePipeline:
    """All three views (the backfill), or one of them (a consumer stage keyed by its entity)."""

    def __init__(self, catalogue: Catalogue, views: tuple[str, ...] = VIEWS):
        unknown = set(views) - set(VIEWS)
        if unknown:
            raise ValueError(f"unknown views {sorted(unknown)}; known: {VIEWS}")
        self.catalogue = catalogue
        self.engines = {view: WindowEngine(_spec(view, catalogue)) for view in views}
        self._item = self.engines.get("item_popularity")
        self._category = self.engines.get("category_season")
        self._customer = self.engines.get("customer_history")
        self.dedup = Deduplicator(DEDUP_HORIZON_US)
        self.events = 0

    def process(
        self, kind: str, event_id: str, item_id: str, customer_id: str, time_us: int,
        price_pence: int = 0, rental_days: int = 0,
    ) -> bool:  # fmt: skip
        """Apply one event; False if it was seen before. Raises ``UnknownItem``."""
        category = self.catalogue.category.get(item_id)
        if category is None:
            raise UnknownItem(item_id)
        if kind not in (CREATED, CANCELLED):
            raise ValueError(f"unknown event kind {kind!r}")
        if not self.dedup.first_time(_event_key(event_id), time_us):
            return False
        item, category_engine, customer = self._item, self._category, self._customer
        if kind == CREATED:
            if item:
                item.apply(item_id, time_us, (1, price_pence * rental_days, price_pence, rental_days, 0))
            if category_engine:
                category_engine.apply(category, time_us, (1,))
            if customer:
                customer.apply(customer_id, time_us, (1, price_pence, self.catalogue.retail[item_id], 0))
        else:
            if item:
                item.apply(item_id, time_us, (0, 0, 0, 0, 1))
            if customer:
                customer.apply(customer_id, time_us, (0, 0, 0, 1))
            if category_engine:  # cancellations are not demand, but they move the clock
                category_engine.advance(time_us)
        self.events += 1
        if self.events % 4096 == 0:
            self.dedup.forget_before(time_us)
        return True

    def advance(self, to_us: int) -> None:
        """Move every clock on, so windows decay even without events."""
        for engine in self.engines.values():
            engine.advance(to_us)
        self.dedup.forget_before(to_us)

    @property
    def clock_us(self) -> int:
        return max(engine.clock_us for engine in self.engines.values())

    def take_rows(self) -> dict[str, list[dict]]:
        return {name: engine.take_rows() for name, engine in self.engines.items()}

    def state(self, keep=None) -> dict:
        """Picklable state; with ``keep`` (a key filter) a subset of entities and no seen ids."""
        return {
            "engines": {view: engine.state(keep) for view, engine in self.engines.items()},
            "dedup": self.dedup.state() if keep is None else None,
            "events": self.events,
        }

    def restore(self, state: dict) -> None:
        for view, engine in self.engines.items():
            if view in state["engines"]:
                engine.restore(state["engines"][view])
        if state["dedup"] is not None:
            self.dedup.restore(state["dedup"])
        self.events = state["events"]


def _spec(view: str, catalogue: Catalogue):
    if view == "item_popularity":
        return item_popularity_spec(catalogue.units)
    if view == "category_season":
        return category_season_spec()
    return customer_history_spec()
