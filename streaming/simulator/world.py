"""The simulated platform: catalogue, customers and the demand process they book by.

History (``history.py``) and the live stream (``live.py``) both draw from one ``World``, so the
live events continue the history rather than starting a different platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from streaming.history.vocabulary import SEGMENTS
from streaming.simulator.catalogue import (
    CATEGORIES,
    SEGMENT_GIVEN_TIER,
    make_customers,
    make_items,
)
from streaming.simulator.price_process import draw_paid_price, expected_price
from streaming.simulator.shifts import Shifts

# Rentals mostly start at the end of the week.
WEEKDAY_DEMAND = np.array([0.8, 0.8, 0.9, 1.1, 1.45, 1.25, 0.7])
WEEKDAY_DEMAND = WEEKDAY_DEMAND / WEEKDAY_DEMAND.mean()
MAX_LEAD_DAYS = 90
MAX_RENTAL_DAYS = 30
PREFERRED_CATEGORY_SHARE = 0.6  # how often a customer books in the category they prefer
POPULARITY_SKEW = 0.8  # Zipf exponent of item popularity: a few hot items, a long tail


class SimulationConfig(BaseModel):
    """Everything that decides the data: the same config writes the same data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 42
    items: int = Field(default=2_000, ge=10, le=1_000_000)
    customers: int | None = Field(default=None, ge=10, description="default: 4 per item")
    days: int = Field(default=365, ge=30, le=3650)
    bookings: int = Field(default=60_000, ge=100, le=50_000_000, description="about this many in the history")
    end: date = Field(default_factory=lambda: datetime.now(UTC).date(), description="history ends here (exclusive)")
    shifts: Shifts = Shifts()
    currency: str = "GBP"

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.end - timedelta(days=self.days), tz="UTC")

    @property
    def n_customers(self) -> int:
        return self.customers or 4 * self.items


class World:
    def __init__(self, config: SimulationConfig):
        self.config = config
        rng = np.random.default_rng([config.seed, 0])
        start = config.start
        self.items = make_items(rng, config.items, start.tz_localize(None), config.days)
        self.customers = make_customers(rng, config.n_customers, start.tz_localize(None))
        n = config.items
        # Popularity: Zipf over a random order of items, with some jitter.
        rank = rng.permutation(n) + 1
        self.base_popularity = rank.astype(float) ** -POPULARITY_SKEW * rng.lognormal(0, 0.3, size=n)
        # Each item's popularity rises to a peak and fades; peaks fall before, in and after the history.
        self.peak_day = rng.uniform(-180, config.days + 180, size=n)
        self.peak_width = rng.uniform(40, 220, size=n)
        self.listing_day = (pd.to_datetime(self.items["listing_date"]) - start.tz_localize(None)).dt.days.to_numpy()
        self.category = self.items["category"].to_numpy()
        self.items["units"] = self._stock_units()
        self._category_series = self.items["category"]
        self._customer_groups = self._group_customers()

    def _stock_units(self) -> np.ndarray:
        """A listing holds enough units to keep its expected utilisation near 60 %."""
        share = self.base_popularity / self.base_popularity.sum()
        yearly = share * self.config.bookings * 365 / self.config.days
        mean_days = np.array([CATEGORIES[c].mean_days for c in self.category])
        return np.clip(np.ceil(yearly * mean_days / (365 * 0.6)), 1, 99).astype(int)

    # -- demand -------------------------------------------------------------------------------
    def intensity(self, item_idx: np.ndarray, start_day: np.ndarray) -> np.ndarray:
        """Relative demand for renting item ``item_idx`` from day ``start_day`` (0 = history start)."""
        start = self.config.start
        dates = start + pd.to_timedelta(start_day, unit="D")
        cats = self._category_series.iloc[item_idx].reset_index(drop=True)
        life = 0.35 + np.exp(-0.5 * ((start_day - self.peak_day[item_idx]) / self.peak_width[item_idx]) ** 2)
        shifts = self.config.shifts
        season = shifts.season(cats, pd.Series(dates.tz_localize(None)), pd.Series(dates))
        trend = shifts.demand_factor(cats, pd.Series(dates))
        weekday = WEEKDAY_DEMAND[dates.dayofweek.to_numpy()]
        listed = start_day >= self.listing_day[item_idx] + 3
        return self.base_popularity[item_idx] * life * season * trend * weekday * listed

    def sample_lead_days(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.clip(np.round(rng.lognormal(np.log(10), 0.9, size=n)), 0, MAX_LEAD_DAYS).astype(int)

    def sample_rental_days(self, item_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean = np.array([CATEGORIES[c].mean_days for c in self.category[item_idx]])
        return np.clip(1 + rng.poisson(mean - 1), 1, MAX_RENTAL_DAYS).astype(int)

    def cancel_probability(self, lead_days: np.ndarray) -> np.ndarray:
        """Bookings made far ahead are cancelled more often (about 8 % overall)."""
        return 0.03 + 0.10 * np.minimum(lead_days, 60) / 60

    # -- customers ----------------------------------------------------------------------------
    def _group_customers(self) -> dict[tuple[str, str | None], np.ndarray]:
        groups: dict[tuple[str, str | None], np.ndarray] = {}
        seg = self.customers["segment"].to_numpy()
        pref = self.customers["preferred_category"].to_numpy()
        for s in SEGMENTS:
            groups[(s, None)] = np.flatnonzero(seg == s)
            for c in CATEGORIES:
                groups[(s, c)] = np.flatnonzero((seg == s) & (pref == c))
        return groups

    def sample_customers(self, item_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Richer segments book higher tiers; most customers book the category they prefer."""
        tiers = self.items["brand_tier"].to_numpy()[item_idx]
        u = rng.random(len(item_idx))
        segment = np.empty(len(item_idx), dtype=object)
        for tier, probs in SEGMENT_GIVEN_TIER.items():
            mask = tiers == tier
            cum = np.cumsum(probs)
            segment[mask] = np.array(SEGMENTS)[np.searchsorted(cum, u[mask] * cum[-1], side="right").clip(0, 3)]
        prefer = rng.random(len(item_idx)) < PREFERRED_CATEGORY_SHARE
        cats = self.category[item_idx]
        out = np.empty(len(item_idx), dtype=np.int64)
        for s in SEGMENTS:
            for c in [*CATEGORIES, None]:
                mask = (segment == s) & (~prefer if c is None else prefer & (cats == c))
                if not mask.any():
                    continue
                pool = self._customer_groups[(s, c)]
                if len(pool) == 0:
                    pool = self._customer_groups[(s, None)]
                if len(pool) == 0:
                    pool = np.arange(len(self.customers))
                out[mask] = pool[rng.integers(len(pool), size=int(mask.sum()))]
        return out

    def booking_frame(self, item_idx: np.ndarray, customer_idx: np.ndarray) -> pd.DataFrame:
        """The item and customer attributes the price process reads, one row per booking."""
        items = self.items.iloc[item_idx].reset_index(drop=True)
        customers = self.customers.iloc[customer_idx].reset_index(drop=True)
        return pd.concat(
            [
                items[["item_id", "category", "brand_tier", "retail_price", "condition", "listing_date"]],
                customers[["customer_id", "segment"]],
            ],
            axis=1,
        )

    def book(
        self,
        item_idx: np.ndarray,
        lead_days: np.ndarray,
        event_time: pd.DatetimeIndex | pd.Timestamp,
        rental_start: Sequence[date] | np.ndarray,
        recent_bookings_30d: np.ndarray,
        rng: np.random.Generator,
    ) -> pd.DataFrame:
        """Bookings of chosen items at chosen times: who books, for how long, what they pay, and
        whether they cancel. History and live stream both book here, so the live stream follows the
        history's rules; the draws come in one fixed order, so a seed decides them."""
        frame = self.booking_frame(item_idx, self.sample_customers(item_idx, rng))
        frame["event_time"] = event_time
        frame["rental_start"] = rental_start
        frame["rental_days"] = self.sample_rental_days(item_idx, rng)
        frame["recent_bookings_30d"] = recent_bookings_30d
        expected = expected_price(frame, self.config.shifts)
        frame["expected_price_per_day"] = expected
        frame["price_per_day"] = draw_paid_price(expected, rng)
        frame["cancelled"] = rng.random(len(frame)) < self.cancel_probability(lead_days)
        return frame
