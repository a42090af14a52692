"""The prediction log: every quote once, joined with its outcome (see README.md beside it).

Checks and reports read it through these functions only, so the files' layout stays the log's own.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd

from monitoring.log import state, store
from rental.settings import Settings


def read_quotes(settings: Settings, start: datetime | date | None = None,
                end: datetime | date | None = None) -> pd.DataFrame:  # fmt: skip
    """Quotes with ``quoted_at`` in [start, end) (naive times are UTC; None: unbounded), oldest
    first: the columns of ``records.QUOTE_COLUMNS`` and the ``f_<feature>`` columns."""
    return store.read(settings, "quotes", start, end)


def read_outcomes(settings: Settings, start: datetime | date | None = None, end: datetime | date | None = None,
                  on: str = "quoted_at") -> pd.DataFrame:  # fmt: skip
    """Final outcome rows (``records.OUTCOME_COLUMNS``) with ``on`` in [start, end): ``quoted_at``
    for the quotes of a window, ``closed_at`` for the rows that became final in it."""
    if on not in ("quoted_at", "closed_at", "window_end"):
        raise ValueError(f"on must be quoted_at, closed_at or window_end, not {on!r}")
    back = timedelta(0) if on == "quoted_at" else _outcome_span(settings)
    return store.read(settings, "outcomes", start, end, on=on, days_before=back)


def read_rejected(settings: Settings, start: datetime | date | None = None,
                  end: datetime | date | None = None) -> pd.DataFrame:  # fmt: skip
    """Records that were not valid quotes or bookings, with ``received_at`` in [start, end)."""
    return store.read(settings, "rejected", start, end)


def read_status(settings: Settings) -> dict | None:
    """The last checkpoint's summary: ``seq``, ``saved_at`` (Unix time), ``watermark`` (µs),
    ``open_quotes``, ``offsets`` and the counters; None before the first."""
    return state.read_pointer(settings)


def _outcome_span(settings: Settings) -> timedelta:
    """How long before its close (or window end) a final row's quote can have been made."""
    return timedelta(seconds=settings.monitor_outcome_window_s + settings.monitor_retention_s
                     + settings.monitor_allowed_lateness_s) + timedelta(days=1)  # fmt: skip
