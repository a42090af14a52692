"""Shifts the simulator can inject from a given moment, for monitoring to catch later.

- inflation: every price grows at an annual rate from ``start``;
- trend: one category's demand (and, more weakly, its price) is multiplied by a factor;
- off-season: one category's seasonal curve is moved by six months (coats sell in July).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streaming.simulator.catalogue import CATEGORIES, season_index

TREND_PRICE_SHARE = 0.3  # a demand trend of x moves the price by x ** 0.3


class Shifts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: datetime | None = Field(default=None, description="When the shifts begin (UTC); none before.")
    inflation_annual: float = Field(default=0.0, ge=-0.5, le=2.0)
    trend_category: str | None = None
    trend_factor: float = Field(default=1.0, gt=0, le=20)
    off_season_category: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Shifts:
        for name in ("trend_category", "off_season_category"):
            value = getattr(self, name)
            if value is not None and value not in CATEGORIES:
                raise ValueError(f"{name}: unknown category {value!r}; known: {sorted(CATEGORIES)}")
        active = self.inflation_annual or self.trend_category or self.off_season_category
        if active and self.start is None:
            raise ValueError("start: a shift needs a start time")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start: must carry a time zone")
        return self

    def _after_start(self, event_time: pd.Series) -> np.ndarray:
        if self.start is None:
            return np.zeros(len(event_time), dtype=bool)
        return (pd.to_datetime(event_time, utc=True) >= pd.Timestamp(self.start)).to_numpy()

    def season(self, category: pd.Series, rental_start: pd.Series, event_time: pd.Series) -> np.ndarray:
        month = pd.to_datetime(rental_start).dt.month.to_numpy()
        if self.off_season_category is not None:
            moved = self._after_start(event_time) & (category == self.off_season_category).to_numpy()
            month = np.where(moved, (month + 5) % 12 + 1, month)
        return season_index(category, month)

    def demand_factor(self, category: pd.Series, event_time: pd.Series) -> np.ndarray:
        factor = np.ones(len(category))
        if self.trend_category is not None:
            hit = self._after_start(event_time) & (category == self.trend_category).to_numpy()
            factor[hit] = self.trend_factor
        return factor

    def price_factor(self, category: pd.Series, event_time: pd.Series) -> np.ndarray:
        factor = self.demand_factor(category, event_time) ** TREND_PRICE_SHARE
        if self.inflation_annual and self.start is not None:
            years = (pd.to_datetime(event_time, utc=True) - pd.Timestamp(self.start)).dt.total_seconds()
            years = (years / (365.25 * 86400)).clip(lower=0).to_numpy()
            factor = factor * (1 + self.inflation_annual) ** years
        return factor
