"""The simulated platform's catalogue and customers.

Brand tiers, categories and their seasons are the levers of the ground-truth price process
(see ``price_process.py``), so they live in one table here that every other module reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from streaming.history.vocabulary import CONDITIONS, SEGMENTS, TIERS

# Brand tiers from high street to luxury: median retail price of a dress, share of brands,
# and the premium a tier's name adds to the rental price beyond its retail price.
TIER_RETAIL_MEDIAN = {"high_street": 70.0, "contemporary": 190.0, "premium": 420.0, "designer": 950.0, "luxury": 2400.0}
TIER_BRAND_SHARE = {"high_street": 0.25, "contemporary": 0.25, "premium": 0.2, "designer": 0.18, "luxury": 0.12}
TIER_PREMIUM = {"high_street": 0.90, "contemporary": 1.00, "premium": 1.05, "designer": 1.10, "luxury": 1.18}


@dataclass(frozen=True)
class Category:
    """How a category rents: price level, rental length and its season, month by month."""

    share: float  # share of the catalogue
    retail_factor: float  # retail price relative to a dress of the same tier
    daily_rate: float  # rental price per day as a fraction of retail, before adjustments
    mean_days: float  # typical rental length
    season: tuple[float, ...]  # demand by month of rental start, Jan..Dec, mean 1


def _normalised(*months: float) -> tuple[float, ...]:
    mean = sum(months) / 12
    return tuple(round(m / mean, 4) for m in months)


CATEGORIES: dict[str, Category] = {
    # weddings May to September, a December party bump
    "dress": Category(0.30, 1.0, 0.040, 4, _normalised(0.55, 0.55, 0.7, 0.9, 1.35, 1.6, 1.6, 1.5, 1.3, 0.8, 0.8, 1.3)),
    # weddings and galas, strongest for December parties
    "gown": Category(0.12, 1.5, 0.045, 3, _normalised(0.5, 0.5, 0.6, 0.8, 1.3, 1.5, 1.4, 1.3, 1.2, 0.8, 1.1, 1.9)),
    "jumpsuit": Category(0.10, 0.9, 0.040, 4, _normalised(0.6, 0.6, 0.8, 1.0, 1.2, 1.4, 1.5, 1.4, 1.1, 0.8, 0.8, 1.2)),
    # winter coats
    "outerwear": Category(
        0.14, 1.4, 0.030, 8, _normalised(1.7, 1.5, 1.0, 0.7, 0.45, 0.35, 0.35, 0.4, 0.7, 1.2, 1.6, 1.8)
    ),
    "knitwear": Category(0.08, 0.7, 0.030, 7, _normalised(1.5, 1.4, 1.1, 0.8, 0.6, 0.5, 0.5, 0.6, 0.9, 1.2, 1.4, 1.5)),
    "bag": Category(0.14, 1.7, 0.025, 7, _normalised(0.9, 0.85, 0.9, 1.0, 1.05, 1.1, 1.1, 1.05, 1.0, 0.95, 1.0, 1.3)),
    "accessory": Category(
        0.12, 0.45, 0.040, 4, _normalised(0.85, 0.85, 0.9, 0.95, 1.05, 1.1, 1.1, 1.05, 1.0, 0.95, 1.0, 1.4)
    ),
}

SEASON_TABLE = pd.DataFrame({c: spec.season for c, spec in CATEGORIES.items()}, index=range(1, 13))


def season_index(category: pd.Series, month: pd.Series | np.ndarray) -> np.ndarray:
    """Demand of a category in a month against its yearly mean (1.0 = an average month)."""
    table = SEASON_TABLE.to_numpy()
    cols = SEASON_TABLE.columns.get_indexer(category)
    if (cols < 0).any():
        unknown = sorted(set(category[cols < 0]))
        raise ValueError(f"unknown categories {unknown}; known: {list(SEASON_TABLE.columns)}")
    return table[np.asarray(month) - 1, cols]


CONDITION_FACTOR = {"new": 1.0, "excellent": 0.95, "good": 0.87, "fair": 0.76}
COLOURS = ("black", "white", "ivory", "red", "navy", "green", "pink", "gold", "silver", "blue", "beige", "print")
SIZES = ("XS", "S", "M", "L", "XL", "one_size")

# Customer segments: share, how much they pay relative to the list level (membership tiers,
# personal offers), and how strongly they lean to higher brand tiers.
SEGMENT_SHARE = {"bargain": 0.30, "regular": 0.40, "occasion": 0.18, "premium": 0.12}
SEGMENT_PRICE_FACTOR = {"bargain": 0.90, "regular": 1.00, "occasion": 1.04, "premium": 1.10}
# P(segment | tier): richer segments book higher tiers.
SEGMENT_GIVEN_TIER = {
    "high_street": (0.50, 0.35, 0.12, 0.03),
    "contemporary": (0.35, 0.42, 0.16, 0.07),
    "premium": (0.22, 0.43, 0.20, 0.15),
    "designer": (0.12, 0.38, 0.25, 0.25),
    "luxury": (0.06, 0.28, 0.26, 0.40),
}

_SYLLABLES = (
    "ar",
    "bel",
    "cor",
    "da",
    "el",
    "fen",
    "gra",
    "hol",
    "is",
    "jo",
    "ka",
    "lu",
    "mar",
    "no",
    "or",
    "pa",
    "quin",
    "ro",
    "sa",
    "tel",
    "ur",
    "va",
    "wen",
    "xa",
    "yl",
    "zo",
)
_BRAND_WORDS = ("Studio", "Maison", "Atelier", "House of", "Collective", "")


def make_brands(rng: np.random.Generator, n_brands: int) -> pd.DataFrame:
    tiers = rng.choice(len(TIERS), size=n_brands, p=[TIER_BRAND_SHARE[t] for t in TIERS])
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_brands:
        word = "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4))).capitalize()
        prefix = _BRAND_WORDS[rng.integers(len(_BRAND_WORDS))]
        name = f"{prefix} {word}".strip()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return pd.DataFrame({"brand": names, "brand_tier": [TIERS[t] for t in tiers]})


def make_items(rng: np.random.Generator, n_items: int, start: pd.Timestamp, days: int) -> pd.DataFrame:
    """Items listed mostly before the history starts, some during it (new stock arrives)."""
    brands = make_brands(rng, max(20, n_items // 40))
    brand_idx = rng.integers(len(brands), size=n_items)
    cats = list(CATEGORIES)
    category = rng.choice(len(cats), size=n_items, p=[CATEGORIES[c].share for c in cats])
    tier = brands["brand_tier"].to_numpy()[brand_idx]
    retail_median = np.array([TIER_RETAIL_MEDIAN[t] for t in tier]) * np.array(
        [CATEGORIES[cats[c]].retail_factor for c in category]
    )
    retail = np.round(retail_median * rng.lognormal(0.0, 0.35, size=n_items), 0).clip(15, 30_000)
    # 70 % listed up to two years before the history, 30 % spread over it.
    before = rng.random(n_items) < 0.7
    offset_days = np.where(before, -rng.integers(1, 730, size=n_items), rng.integers(0, days, size=n_items))
    listing = (start + pd.to_timedelta(offset_days, unit="D")).normalize()
    condition = rng.choice(len(CONDITIONS), size=n_items, p=[0.25, 0.4, 0.27, 0.08])
    items = pd.DataFrame(
        {
            "item_id": [f"item_{i:06d}" for i in range(n_items)],
            "brand": brands["brand"].to_numpy()[brand_idx],
            "brand_tier": tier,
            "category": [cats[c] for c in category],
            "colour": rng.choice(COLOURS, size=n_items),
            "size": rng.choice(SIZES, size=n_items),
            "retail_price": retail,
            "condition": [CONDITIONS[c] for c in condition],
            "listing_date": listing.date,
        }
    )
    # Accessories and bags come in one size.
    one_size = items["category"].isin(["bag", "accessory"])
    items.loc[one_size, "size"] = "one_size"
    items.loc[~one_size & (items["size"] == "one_size"), "size"] = "M"
    return items


def make_customers(rng: np.random.Generator, n_customers: int, start: pd.Timestamp) -> pd.DataFrame:
    segment = rng.choice(len(SEGMENTS), size=n_customers, p=[SEGMENT_SHARE[s] for s in SEGMENTS])
    cats = list(CATEGORIES)
    preferred = rng.choice(len(cats), size=n_customers, p=[CATEGORIES[c].share for c in cats])
    signup = (start - pd.to_timedelta(rng.integers(0, 1000, size=n_customers), unit="D")).normalize()
    return pd.DataFrame(
        {
            "customer_id": [f"cust_{i:07d}" for i in range(n_customers)],
            "segment": [SEGMENTS[s] for s in segment],
            "preferred_category": [cats[c] for c in preferred],
            "signup_date": signup.date,
        }
    )
