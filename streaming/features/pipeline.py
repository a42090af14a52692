"""Booking events in, feature rows out: the one path the live consumer and the backfill share."""

from __future__ import annotations

from dataclasses import dataclass

import mmh3
import numpy as np
import pandas as pd
import pyarrow as pa

from streaming.features.definitions import category_season_spec, customer_history_spec, item_popularity_spec
from streaming.features.windows import DAY_US, Deduplicator, WindowEngine

CREATED, CANCELLED = "booking_created", "booking_cancelled"
DEDUP_HORIZON_US = 366 * DAY_US  # the longest window, and a day for late redeliveries
APPLIED, DUPLICATE, UNKNOWN_ITEM = 0, 1, 2


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
    """A compact, process-independent key for de-duplication (Python's str hash is salted):
    64 bits of murmur3, a fifth of blake2b's cost."""
    return mmh3.hash64(event_id)[0]


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
        status = self.process_many([(kind, event_id, item_id, customer_id, time_us, price_pence, rental_days)])[0]
        if status == UNKNOWN_ITEM:
            raise UnknownItem(item_id)
        return status == APPLIED

    def process_many(self, events: list[tuple]) -> list[int]:
        """Apply events in order, each a tuple of ``process``'s arguments; return a status per
        event: APPLIED, DUPLICATE (seen before) or UNKNOWN_ITEM (nothing applied).

        Only the checks run per event in Python; the measures of the applied events are built
        as columns, and only for the views this pipeline has."""
        category_of, first_time = self.catalogue.category, self.dedup.first_time
        status, applied = [], []
        for event in events:
            kind, event_id, item_id = event[0], event[1], event[2]
            if item_id not in category_of:
                status.append(UNKNOWN_ITEM)
            elif kind != CREATED and kind != CANCELLED:
                raise ValueError(f"unknown event kind {kind!r}")
            elif first_time(_event_key(event_id), event[4]):
                status.append(APPLIED)
                applied.append(event)
            else:
                status.append(DUPLICATE)
        if applied:
            self._apply(applied)
        return status

    def _apply(self, events: list[tuple]) -> None:
        kinds, _, items, customers, times, prices, days = zip(*events, strict=True)
        at = np.array(times, np.int64)
        created = np.array(kinds, dtype=object) == CREATED
        booked, cancelled = created.astype(np.int64), (~created).astype(np.int64)
        prices, days = np.array(prices, np.int64) * booked, np.array(days, np.int64) * booked  # a cancellation: 0
        if self._item:
            self._item.apply_many(items, at, np.column_stack([booked, prices * days, prices, days, cancelled]))
        if self._category:  # cancellations are not demand, but they move the clock (a None key)
            category_of = self.catalogue.category
            keys = [category_of[item] if c else None for item, c in zip(items, created.tolist(), strict=True)]
            self._category.apply_many(keys, at, np.ones((len(at), 1), np.int64))
        if self._customer:
            retail = np.fromiter(map(self.catalogue.retail.__getitem__, items), np.int64, len(items))
            self._customer.apply_many(customers, at, np.column_stack([booked, prices, retail * booked, cancelled]))
        before = self.events
        self.events += len(events)
        if self.events // 4096 != before // 4096:
            self.dedup.forget_before(times[-1])

    def advance(self, to_us: int) -> None:
        """Move every clock on, so windows decay even without events."""
        for engine in self.engines.values():
            engine.advance(to_us)
        self.dedup.forget_before(to_us)

    @property
    def clock_us(self) -> int:
        return max(engine.clock_us for engine in self.engines.values())

    def take_tables(self) -> dict[str, pa.Table]:
        return {name: engine.take_table() for name, engine in self.engines.items()}

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
