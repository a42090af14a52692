"""The rows a poll changed: written to Redis at once, kept for the offline store.

Redis gets them after every poll, for freshness (the HSETs are queued: the checkpoint flushes
them before it commits). The Parquet offline store gets them at the next checkpoint, one append
for all its polls rather than a file per day partition on every poll.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from streaming.consumer.counters import Counters
from streaming.consumer.partitions import PartitionState
from streaming.feature_store.online_write import OnlineWriter


class RowWriter:
    def __init__(self, view: str, online: OnlineWriter, counters: Counters):
        self.view, self.online, self.counters = view, online, counters
        self.offline_rows: list[pa.Table] = []
        self.held = 0  # rows in offline_rows

    def write(self, parts: Iterable[PartitionState]) -> None:
        engines = [part.pipeline.engines[self.view] for part in parts]
        tables = [engine.take_table() for engine in engines if engine.pending]  # most partitions: none
        if tables:
            rows = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            self.counters.rows_online += self.online.write(self.view, rows)
            self.offline_rows.append(rows)
            self.held += len(rows)

    def take_offline(self) -> pa.Table | None:
        """The rows kept since the last call, as one table (None if there are none)."""
        tables, self.offline_rows, self.held = self.offline_rows, [], 0
        return pa.concat_tables(tables) if tables else None
