"""Booking events in, feature rows out: the one path the live consumer and the backfill share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from streaming.features.definitions import category_season_spec, customer_history_spec, item_popularity_spec
from streaming.features.event_batch import EventBatch
from streaming.features.windows import DAY_US, Deduplicator, WindowEngine

DEDUP_HORIZON_US = 366 * DAY_US  # the longest window, and a day for late redeliveries
# Seen ids are forgotten at most this often (of event or idle clock time): each forgetting
# rebuilds the table of ids, so an id outlives its horizon by up to a day.
FORGET_EVERY_US = DAY_US
APPLIED, DUPLICATE, UNKNOWN_ITEM = 0, 1, 2


class UnknownItem(KeyError):
    """An event for an item the catalogue does not have."""


@dataclass(frozen=True)
class Catalogue:
    """What the features need to know about each item.

    A live catalogue (``streaming.catalogue``) changes in place while stages read it: a
    follower thread sets an item's retail price and units before its category, whose presence
    is what "known" means, so a reader never sees half an item. Single dict stores and lookups
    are atomic under the GIL; nothing iterates these dicts while the stream runs."""

    category: dict[str, str]
    retail: dict[str, int]  # whole pounds; 0 when the catalogue has no retail price for the item
    units: dict[str, int]
    # The items topic's next offset per partition that these dicts include (a live catalogue).
    followed: dict[int, int] = field(default_factory=dict, compare=False, repr=False)
    # Called when an event names an unknown item: reads the items topic up to its end offsets,
    # so an item listed a moment before its booking counts (``streaming.catalogue.follower``).
    _catch_up: list[Callable[[], None]] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> Catalogue:
        """From an items table; its optional columns may be absent or blank (retail price:
        unknown, kept as 0; units: 1), as ``history.tables.OPTIONAL_MEANING`` says."""
        ids = items["item_id"].astype(str).tolist()
        units = _column(items, "units", 1)
        retail = _column(items, "retail_price", 0).astype(float).round()
        return cls(
            category=dict(zip(ids, items["category"].astype(str), strict=True)),
            retail=dict(zip(ids, retail.astype(int).tolist(), strict=True)),
            units=dict(zip(ids, units.astype(int).tolist(), strict=True)),
        )

    def put(self, item_id: str, category: str, retail_price: float | None, units: int) -> None:
        """List or change an item (rounded as ``from_items`` rounds); its category last."""
        self.retail[item_id] = 0 if retail_price is None else round(retail_price)
        self.units[item_id] = int(units)
        self.category[item_id] = category

    def on_unknown(self, catch_up: Callable[[], None] | None) -> None:
        self._catch_up[:] = [catch_up] if catch_up else []

    def known(self, item_ids) -> np.ndarray:
        """Which items the catalogue has; when some are missing, catch up first and ask again."""
        n = len(item_ids)
        known = np.fromiter(map(self.category.__contains__, item_ids), bool, n)
        if self._catch_up and not known.all():
            self._catch_up[0]()
            known = np.fromiter(map(self.category.__contains__, item_ids), bool, n)
        return known


def _column(items: pd.DataFrame, name: str, absent) -> pd.Series:
    """An optional column with its blanks (or the whole column, when absent) as ``absent``."""
    if name not in items:
        return pd.Series(absent, index=items.index)
    return items[name].astype(object).where(items[name].notna(), absent)


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
        self._forgot_at = -FORGET_EVERY_US  # the clock when seen ids were last forgotten

    def process(
        self, kind: str, event_id: str, item_id: str, customer_id: str, time_us: int,
        price_pence: int = 0, rental_days: int = 0,
    ) -> bool:  # fmt: skip
        """Apply one event; False if it was seen before. Raises ``UnknownItem``."""
        status = self.process_many([(kind, event_id, item_id, customer_id, time_us, price_pence, rental_days)])[0]
        if status == UNKNOWN_ITEM:
            raise UnknownItem(item_id)
        return status == APPLIED

    def process_many(self, events: list[tuple]) -> np.ndarray:
        """``process_batch`` for a list of ``process``'s argument tuples."""
        return self.process_batch(EventBatch.from_tuples(events))

    def process_batch(self, batch: EventBatch) -> np.ndarray:
        """Apply events in order; return a status per event: APPLIED, DUPLICATE (seen before)
        or UNKNOWN_ITEM (nothing applied). Only the catalogue and seen-id lookups run per event
        in Python; the rest is columns, and only for the views this pipeline has."""
        n = len(batch)
        known = self.catalogue.known(batch.item_id)
        status = np.full(n, UNKNOWN_ITEM, np.int8)
        first = self.dedup.first_time_many(batch.event_key[known], batch.time_us[known])
        status[known] = np.where(first, APPLIED, DUPLICATE)
        applied = status == APPLIED
        if applied.any():
            self._apply(batch.take(applied) if not applied.all() else batch)
        return status

    def _apply(self, batch: EventBatch) -> None:
        at, created = batch.time_us, batch.created
        booked, cancelled = created.astype(np.int64), (~created).astype(np.int64)
        prices, days = batch.price_pence * booked, batch.rental_days * booked  # a cancellation: 0
        items = batch.item_id
        if self._item:
            self._item.apply_many(items, at, np.column_stack([booked, prices * days, prices, days, cancelled]))
        if self._category:  # cancellations are not demand, but they move the clock (a None key)
            category_of = self.catalogue.category
            keys = [category_of[item] if c else None for item, c in zip(items, created.tolist(), strict=True)]
            self._category.apply_many(keys, at, np.ones((len(at), 1), np.int64))
        if self._customer:
            retail = np.fromiter(map(self.catalogue.retail.__getitem__, items), np.int64, len(items))
            self._customer.apply_many(
                batch.customer_id, at, np.column_stack([booked, prices, retail * booked, cancelled])
            )
        before = self.events
        self.events += len(batch)
        if self.events // 4096 != before // 4096:
            self._forget(int(at[-1]))

    def advance(self, to_us: int) -> None:
        """Move every clock on, so windows decay even without events (and old ids are forgotten)."""
        for engine in self.engines.values():
            engine.advance(to_us)
        self._forget(to_us)

    def _forget(self, now_us: int) -> None:
        if now_us - self._forgot_at >= FORGET_EVERY_US:
            self.dedup.forget_before(now_us)
            self._forgot_at = now_us

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
