"""A year (or more) of booking history drawn from the simulated platform.

Bookings are drawn per (item, rental start day) from the demand process, then given a lead
time, a customer, a rental length, a true expected price and the price paid; some are
cancelled before the rental starts. Work is done in item chunks so 100,000 items fit in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from streaming.history.tables import BOOKINGS, CUSTOMERS, ITEMS, History, validate
from streaming.simulator.world import MAX_LEAD_DAYS, SimulationConfig, World

ITEM_CHUNK = 4_000
RECENT_WINDOW = pd.Timedelta(days=30)


def recent_counts(item_idx: np.ndarray, times_ns: np.ndarray, window_ns: int) -> np.ndarray:
    """For each booking, the item's earlier bookings in (t - window, t), itself excluded.

    Needs the rows sorted by (item, time). Times are replaced by their rank so that
    ``item * ranks + rank`` is one int64 key that cannot overflow, and one ``searchsorted``
    answers every row.
    """
    uniq = np.unique(times_ns)
    rank = np.searchsorted(uniq, times_ns)
    rank_window = np.searchsorted(uniq, times_ns - window_ns, side="right")
    stride = len(uniq) + 1
    key = item_idx.astype(np.int64) * stride + rank
    if not np.all(np.diff(key) >= 0):
        raise ValueError("rows must be sorted by item, then time")
    first_at_t = np.searchsorted(key, key, side="left")
    first_in_window = np.searchsorted(key, item_idx.astype(np.int64) * stride + rank_window, side="left")
    return first_at_t - first_in_window


def generate_bookings(world: World, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    cfg = world.config
    rng = np.random.default_rng([cfg.seed, 1])
    n_items = cfg.items
    start_days = np.arange(cfg.days + MAX_LEAD_DAYS)
    in_history = start_days < cfg.days

    # Scale the intensity so that about cfg.bookings rentals start within the history.
    chunks = [np.arange(i, min(i + ITEM_CHUNK, n_items)) for i in range(0, n_items, ITEM_CHUNK)]
    lam_chunks, total = [], 0.0
    for chunk in chunks:
        items = np.repeat(chunk, len(start_days))
        days = np.tile(start_days, len(chunk))
        lam = world.intensity(items, days).astype(np.float32)
        total += float(lam.reshape(len(chunk), -1)[:, in_history].sum())
        lam_chunks.append(lam)
    scale = cfg.bookings / max(total, 1e-9)

    item_parts, day_parts = [], []
    for chunk, lam in zip(chunks, lam_chunks, strict=True):
        counts = rng.poisson(lam * scale)
        cells = np.flatnonzero(counts)
        reps = counts[cells]
        item_parts.append(np.repeat(chunk[cells // len(start_days)], reps))
        day_parts.append(np.repeat(start_days[cells % len(start_days)], reps))
        if progress:
            progress(len(chunk))
    item_idx = np.concatenate(item_parts)
    start_day = np.concatenate(day_parts)

    # When each booking was made: lead days before the start, at a random time of day.
    lead = world.sample_lead_days(len(item_idx), rng)
    seconds = rng.integers(7 * 3600, 23 * 3600, size=len(item_idx))
    history_start = cfg.start
    event_time = history_start + pd.to_timedelta(start_day - lead, unit="D") + pd.to_timedelta(seconds, unit="s")
    event_time = event_time + pd.to_timedelta(rng.integers(0, 1_000_000, size=len(item_idx)), unit="us")
    keep = np.asarray((event_time >= history_start) & (event_time < history_start + pd.Timedelta(days=cfg.days)))
    keep &= start_day >= world.listing_day[item_idx] + 3
    item_idx, start_day, lead, event_time = item_idx[keep], start_day[keep], lead[keep], event_time[keep]

    order = np.lexsort((event_time.asi8, item_idx))
    item_idx, start_day, lead, event_time = item_idx[order], start_day[order], lead[order], event_time[order]
    recent = recent_counts(item_idx, event_time.asi8, RECENT_WINDOW.value)

    rental_start = (history_start.tz_localize(None) + pd.to_timedelta(start_day, unit="D")).date
    frame = world.book(item_idx, lead, event_time, rental_start, recent, rng)
    frame["expected_price_per_day"] = frame["expected_price_per_day"].round(4)
    frame["currency"] = cfg.currency

    # Cancellations happen between booking and rental start; later than the history's end
    # they have not happened yet.
    cancelled = frame.pop("cancelled").to_numpy()
    rental_start_ts = pd.to_datetime(frame["rental_start"]).dt.tz_localize("UTC")
    span = (rental_start_ts - frame["event_time"]).clip(lower=pd.Timedelta(minutes=1))
    cancelled_at = (frame["event_time"] + span * rng.random(len(frame))).dt.floor("us")
    end = history_start + pd.Timedelta(days=cfg.days)
    frame["cancelled_at"] = cancelled_at.where(cancelled & (cancelled_at < end).to_numpy())

    frame = frame.sort_values(["event_time", "item_id"], kind="stable").reset_index(drop=True)
    frame.insert(0, "booking_id", [f"bk_{cfg.seed}_{i:08d}" for i in range(len(frame))])
    return frame[
        [
            "booking_id", "item_id", "customer_id", "event_time", "rental_start", "rental_days",
            "price_per_day", "currency", "cancelled_at", "expected_price_per_day", "recent_bookings_30d",
        ]
    ]  # fmt: skip


def simulate(config: SimulationConfig, progress: Callable[[int], None] | None = None) -> History:
    """Catalogue, customers and booking history, checked against the same schema as user data."""
    world = World(config)
    bookings = generate_bookings(world, progress)
    tables = {}
    for table, frame in ((ITEMS, world.items), (CUSTOMERS, world.customers), (BOOKINGS, bookings)):
        checked, problems = validate(frame, table, f"simulated {table.name}")
        problems.raise_if_any()
        tables[table.name] = checked
    return History(tables["items"], tables["customers"], tables["bookings"])
