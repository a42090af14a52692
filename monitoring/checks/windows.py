"""Event-time windows: fixed, aligned to the epoch, so every run cuts the log the same way.

A window [start, end) is closed when every quote in it has a final outcome: the log's
outcome rows are final once the watermark passes a quote's time plus the outcome window, so
a window is closed when the newest ``closed_at`` in the outcomes table is at least its end
plus ``monitor_outcome_window_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd


@dataclass(frozen=True, order=True)
class Window:
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """A name that sorts in time order and is safe as a folder name."""
        return f"{self.start:%Y%m%dT%H%M%SZ}"

    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"


def _utc(moment: datetime | pd.Timestamp) -> datetime:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def window_of(moment: datetime, size: timedelta) -> Window:
    """The window holding ``moment``: windows are multiples of ``size`` since the epoch."""
    moment = _utc(moment)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    n = (moment - epoch) // size
    start = epoch + n * size
    return Window(start, start + size)


def windows_between(first: datetime, end: datetime, size: timedelta) -> list[Window]:
    """Every window from the one holding ``first`` up to those ending at or before ``end``."""
    out, window = [], window_of(first, size)
    end = _utc(end)
    while window.end <= end:
        out.append(window)
        window = Window(window.end, window.end + size)
    return out


def closed_until(newest_closed_at: datetime | None, outcome_window: timedelta) -> datetime | None:
    """The end of the newest window whose quotes all have final outcomes."""
    if newest_closed_at is None or pd.isna(newest_closed_at):
        return None
    return _utc(newest_closed_at) - outcome_window
