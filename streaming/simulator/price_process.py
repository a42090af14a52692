"""The ground-truth price process: the rule the simulated platform really prices by.

Because this rule is known, evaluation can compare a model's error with the noise floor (the
error of the true expected price), not only with baselines. The rule, for one booking:

    expected = (BASE_FEE + retail_price * daily_rate[category] * tier_premium[brand_tier]
                          * condition_factor[condition] * exp(-AGE_DECAY * item_age_years))
             * (1 + SEASON_ELASTICITY * (season[category][month of rental_start] - 1))
             * (1 + POPULARITY_GAIN * ln(1 + bookings of the item in the 30 days before))
             * segment_factor[customer segment]
             * (rental_days / mean_days[category]) ** -LENGTH_ELASTICITY
             * (1 + LAST_MINUTE_PREMIUM * exp(-lead_days / 3))
             * (WEEKEND_PREMIUM if the rental starts on a Friday or Saturday else 1)
             * shifts (inflation, category trend), when injected

    paid = expected * exp(NOISE_SIGMA * z - NOISE_SIGMA**2 / 2),  z ~ N(0, 1), rounded to pence

so ``expected`` is the mean of ``paid``. "Bookings in the 30 days before" counts the item's
booking_created events in (t - 30 days, t), t the booking's event time, cancelled or not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from streaming.simulator.catalogue import CATEGORIES, CONDITION_FACTOR, SEGMENT_PRICE_FACTOR, TIER_PREMIUM
from streaming.simulator.shifts import Shifts

BASE_FEE = 3.0
AGE_DECAY = 0.10
SEASON_ELASTICITY = 0.35
POPULARITY_GAIN = 0.12
LENGTH_ELASTICITY = 0.15
LAST_MINUTE_PREMIUM = 0.12
WEEKEND_PREMIUM = 1.05
NOISE_SIGMA = 0.12

PRICE_INPUTS = (
    "retail_price", "brand_tier", "category", "condition", "listing_date", "event_time",
    "rental_start", "rental_days", "segment", "recent_bookings_30d",
)  # fmt: skip


def expected_price(frame: pd.DataFrame, shifts: Shifts | None = None) -> np.ndarray:
    """True expected price per day of each row (a booking, real or hypothetical)."""
    missing = [c for c in PRICE_INPUTS if c not in frame.columns]
    if missing:
        raise ValueError(f"expected_price needs columns {missing}")
    shifts = shifts or Shifts()
    event_time = pd.to_datetime(frame["event_time"], utc=True)
    start = pd.to_datetime(frame["rental_start"])
    listing = pd.to_datetime(frame["listing_date"]).dt.tz_localize("UTC")
    category = frame["category"]

    age_years = ((event_time - listing).dt.total_seconds() / (365.25 * 86400)).clip(lower=0).to_numpy()
    level = BASE_FEE + (
        frame["retail_price"].to_numpy(float)
        * category.map(lambda c: CATEGORIES[c].daily_rate).to_numpy(float)
        * frame["brand_tier"].map(TIER_PREMIUM).to_numpy(float)
        * frame["condition"].map(CONDITION_FACTOR).to_numpy(float)
        * np.exp(-AGE_DECAY * age_years)
    )
    season = 1 + SEASON_ELASTICITY * (shifts.season(category, start, event_time) - 1)
    popularity = 1 + POPULARITY_GAIN * np.log1p(frame["recent_bookings_30d"].to_numpy(float))
    segment = frame["segment"].map(SEGMENT_PRICE_FACTOR).to_numpy(float)
    mean_days = category.map(lambda c: CATEGORIES[c].mean_days).to_numpy(float)
    length = (frame["rental_days"].to_numpy(float) / mean_days) ** -LENGTH_ELASTICITY
    lead_days = (start - event_time.dt.tz_localize(None).dt.normalize()).dt.days.clip(lower=0).to_numpy(float)
    last_minute = 1 + LAST_MINUTE_PREMIUM * np.exp(-lead_days / 3)
    weekend = np.where(start.dt.dayofweek.isin([4, 5]).to_numpy(), WEEKEND_PREMIUM, 1.0)
    drift = shifts.price_factor(category, event_time)
    return level * season * popularity * segment * length * last_minute * weekend * drift


def draw_paid_price(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the customer paid: the expected price with multiplicative noise of known size."""
    noise = np.exp(NOISE_SIGMA * rng.standard_normal(len(expected)) - NOISE_SIGMA**2 / 2)
    return np.round(expected * noise, 2).clip(0.5, None)
