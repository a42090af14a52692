"""A catalogue shaped like a real platform's, not the simulator's: only item_id, brand and
category (plus colour and a name), thousands of brands with a long tail, categories and names
in free words (commas, accents, emoji, slashes, 500 characters), and a price per day that
depends on brand, category and colour with noise. ``bookings`` makes a booking history of it.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

NASTY = (
    "Cotton-Jersey, Loose, Summer, Seasonal",
    "Robe d'été à fleurs / rose",
    "Evening 🌙 gowns ✨",
    'Knit: wool/cashmere; "chunky"',
    "Ночные платья",
    "M" + "a" * 498 + "x",  # 500 characters
)
WORDS = ("Midi", "Maxi", "Wrap", "Slip", "Shirt", "Sequin", "Bridal", "Cocktail", "Linen", "Velvet", "Satin",
         "Lace", "Puff-sleeve", "Tiered", "Pleated", "Off-shoulder", "Halter", "Bodycon", "Smock")  # fmt: skip
COLOURS = ("black", "white", "ivory", "red", "navy", "green", "pink", "gold", "silver", "blue", "beige",
           "multi / print", "lilac", "emerald", "burgundy")  # fmt: skip


def catalogue(items: int, brands: int, seed: int = 0, categories: int = 24) -> pd.DataFrame:
    """The catalogue with its true listed price per day (``listed_price``, not a contract column)."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, brands + 1) ** 1.1  # a few big houses, a long tail of small labels
    brand = rng.choice(brands, size=items, p=weights / weights.sum())
    names = [f"{NASTY[k % len(NASTY)]} {k}" if k % 7 == 0 else f"Maison {k:05d}" for k in range(brands)]
    kinds = list(NASTY) + [f"{a} {b}" for a, b in zip(WORDS, WORDS[3:] + WORDS[:3], strict=True)]
    kinds = kinds[:categories]
    category = rng.integers(0, len(kinds), size=items)
    colour = rng.integers(0, len(COLOURS), size=items)
    brand_effect = rng.normal(0, 0.55, size=brands)
    category_effect = rng.normal(0, 0.35, size=len(kinds))
    colour_effect = rng.normal(0, 0.12, size=len(COLOURS))
    log_price = 3.2 + brand_effect[brand] + category_effect[category] + colour_effect[colour]
    price = np.round(np.exp(log_price + rng.normal(0, 0.2, size=items)), 2).clip(1, 5_000)
    return pd.DataFrame({
        "item_id": [f"real-{k:06d}" for k in range(items)],
        "name": [f"{NASTY[k % len(NASTY)]} no. {k}" for k in range(items)],
        "brand": [names[b] for b in brand],
        "colour": [COLOURS[c] if k % 11 else None for k, c in enumerate(colour)],  # some unknown
        "category": [kinds[c] for c in category],
        "listed_price": price,
    })  # fmt: skip


def bookings(items: pd.DataFrame, customers: int, n: int, end: date, days: int, seed: int = 0) -> pd.DataFrame:
    """Bookings over the ``days`` before ``end``: popular items booked more, each at its listed
    price with a little noise; no cancelled_at, no currency (both optional)."""
    rng = np.random.default_rng(seed + 1)
    popularity = rng.gamma(0.8, size=len(items))
    item = rng.choice(len(items), size=n, p=popularity / popularity.sum())
    end_us = pd.Timestamp(end, tz="UTC").value // 1_000
    at = np.sort(end_us - rng.integers(1, days * 86_400_000_000, size=n))
    event_time = pd.to_datetime(at, unit="us", utc=True)
    lead = rng.integers(1, 40, size=n)
    price = items["listed_price"].to_numpy()[item] * rng.lognormal(0, 0.05, size=n)
    return pd.DataFrame({
        "booking_id": [f"rb-{k:07d}" for k in range(n)],
        "item_id": items["item_id"].to_numpy()[item],
        "customer_id": [f"rc-{c:05d}" for c in rng.integers(0, customers, size=n)],
        "event_time": event_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "rental_start": (event_time.normalize() + pd.to_timedelta(lead, unit="D")).strftime("%Y-%m-%d"),
        "rental_days": rng.integers(1, 8, size=n),
        "price_per_day": np.round(price, 2).clip(0.5),
    })  # fmt: skip
