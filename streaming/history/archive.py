"""The live bookings into the history: what the stream saw becomes training rows.

Training reads its entity rows and labels from the history's Parquet, so bookings that only
ever reached the stream would never teach a model. ``archive`` reads the bookings topic with a
group of its own, from its committed offsets to the end offsets at its start (a bounded
catch-up), turns each ``BookingCreated`` into a bookings row and each ``BookingCancelled`` into
its booking's ``cancelled_at``, rewrites the history's files atomically with the writer's exact
Arrow types (so the training set's fast path still trusts them), and only then commits. A crash
between the write and the commit reads the same records again, and the booking ids already in
the history make them duplicates: nothing is lost or doubled.

A booking whose item neither the history nor the live catalogue knows is set aside with a
counted reason (the feature consumer has sent it to the DLQ; `rental catalogue dlq replay`
brings it back to the topic once the item is listed, and the next run archives it). A
customer the history does not know is added with only its id: the event says nothing more, and
the customers table's other columns mean "unknown" when blank.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rental.settings import Settings
from streaming.events import BookingCancelled, BookingCreated, EventError, decode
from streaming.history.tables import (
    BOOKINGS,
    CUSTOMERS,
    ITEMS,
    History,
    Table,
    TableError,
    history_paths,
    load_history,
    validate,
)

log = logging.getLogger(__name__)

UNDECODABLE = "undecodable (already in the DLQ)"
UNKNOWN_ITEM = "unknown item (not in the history or the live catalogue)"
UNKNOWN_BOOKING = "cancels a booking the history does not have"
CANCELLED_BEFORE_BOOKED = "cancelled before it was booked"
IN_THE_FUTURE = "dated further ahead than RENTAL_STREAM_MAX_FUTURE_SKEW_S"
CHUNK_ROWS = 50_000  # new rows held as Python values before they move to a compact Arrow chunk
POLL_RECORDS = 10_000


def booking_row(event: BookingCreated) -> dict:
    """A ``BookingCreated`` as a row of the history's bookings table (never cancelled yet; the
    simulator-only columns unknown)."""
    return {"booking_id": event.booking_id, "item_id": event.item_id, "customer_id": event.customer_id,
            "event_time": event.event_time, "rental_start": event.rental_start, "rental_days": event.rental_days,
            "price_per_day": event.price_per_day, "currency": event.currency}  # fmt: skip


def customer_row(customer_id: str) -> dict:
    """A customer known only by id: segment, preferred category and signup date unknown (null)."""
    return {"customer_id": customer_id}


@dataclass
class ArchiveReport:
    read: int = 0
    appended: int = 0
    cancelled: int = 0  # cancellations applied, to new rows or to the history's
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> records
    customers_added: int = 0
    items_added: int = 0
    lost_to_retention: int = 0  # records deleted from the topic before this group read them
    topic_missing: bool = False
    bookings: int = 0  # in the history after the run
    span: tuple[datetime, datetime] | None = None  # the history's first and last booking
    committed: dict[int, int] = field(default_factory=dict)  # partition -> offset

    def as_dict(self) -> dict:
        return {"read": self.read, "appended": self.appended, "cancelled": self.cancelled,
                "duplicates": self.duplicates, "rejected": dict(self.rejected),
                "customers_added": self.customers_added, "items_added": self.items_added,
                "lost_to_retention": self.lost_to_retention, "topic_missing": self.topic_missing,
                "bookings": self.bookings,
                "span": [t.isoformat() for t in self.span] if self.span else None}  # fmt: skip


class Appender:
    """Events in, the history with them out; no I/O but ``catalogue`` (called once, on the
    first item the history lacks)."""

    def __init__(self, history: History, catalogue: Callable[[], pd.DataFrame], latest_allowed: datetime,
                 report: ArchiveReport | None = None):  # fmt: skip
        self.history, self.report = history, report or ArchiveReport()
        self._catalogue, self._listed = catalogue, None
        self.latest_allowed = latest_allowed
        self._ids = pd.Index(history.bookings["booking_id"])  # a hash lookup, no set of every id
        self._cancelled_at = history.bookings["cancelled_at"].to_numpy()
        self._event_times = history.bookings["event_time"]
        self._items = set(history.items["item_id"])
        self._customers = set(history.customers["customer_id"])
        self._new_items: list[pd.DataFrame] = []
        self._new_customers: list[str] = []
        self._new: dict[str, datetime] = {}  # booking id -> event time, this run's bookings
        self._rows: list[dict] = []
        self._chunks: list[pa.Table] = []
        self._history_cancels: dict[int, datetime] = {}  # history row -> cancelled_at
        self._new_cancels: dict[str, datetime] = {}  # this run's booking id -> cancelled_at

    @property
    def changed(self) -> bool:
        return bool(self._new or self._history_cancels)

    def add_record(self, payload: bytes | None) -> str:
        try:
            event = decode(payload if payload is not None else b"")
        except EventError:
            return self._reject(UNDECODABLE)
        return self.add(event)

    def add(self, event: BookingCreated | BookingCancelled) -> str:
        """One event; what became of it: appended, cancelled, duplicate or a rejection reason."""
        if event.event_time > self.latest_allowed:
            return self._reject(IN_THE_FUTURE)
        if isinstance(event, BookingCancelled):
            return self._cancel(event)
        if event.booking_id in self._new or event.booking_id in self._ids:
            self.report.duplicates += 1
            return "duplicate"
        if event.item_id not in self._items and not self._list_item(event.item_id):
            return self._reject(UNKNOWN_ITEM)
        if event.customer_id not in self._customers:
            self._customers.add(event.customer_id)
            self._new_customers.append(event.customer_id)
        self._new[event.booking_id] = event.event_time
        self._rows.append(booking_row(event))
        if len(self._rows) >= CHUNK_ROWS:
            self._flush_rows()
        self.report.appended += 1
        return "appended"

    def _reject(self, reason: str) -> str:
        self.report.rejected[reason] += 1
        return reason

    def _cancel(self, event: BookingCancelled) -> str:
        booking, at = event.booking_id, event.event_time  # a cancellation happens when it is sent
        if booking in self._new:
            booked, already = self._new[booking], booking in self._new_cancels
        elif booking in self._ids:
            row = self._ids.get_loc(booking)
            booked = self._event_times.iloc[row]
            already = row in self._history_cancels or not pd.isna(self._cancelled_at[row])
        else:
            return self._reject(UNKNOWN_BOOKING)
        if already:
            self.report.duplicates += 1
            return "duplicate"
        if at < booked:
            return self._reject(CANCELLED_BEFORE_BOOKED)
        if booking in self._new:
            self._new_cancels[booking] = at
        else:
            self._history_cancels[row] = at
        self.report.cancelled += 1
        return "cancelled"

    def _list_item(self, item_id: str) -> bool:
        """Take the item from the live catalogue, if it is listed there."""
        if self._listed is None:
            listed = self._catalogue()
            self._listed = listed[~listed["item_id"].isin(self._items)].set_index("item_id", drop=False)
        if item_id not in self._listed.index:
            return False
        self._items.add(item_id)
        self._new_items.append(self._listed.loc[[item_id]])
        return True

    def _flush_rows(self) -> None:
        if self._rows:
            self._chunks.append(pa.Table.from_pylist(self._rows))
            self._rows = []

    def result(self) -> History:
        """The history with this run's bookings appended and every cancellation applied, sorted
        by event time as ``load_history`` returns it."""
        self._flush_rows()
        h = self.history
        bookings = h.bookings
        if self._history_cancels:
            bookings = bookings.copy()
            rows = list(self._history_cancels)
            at = pd.to_datetime(list(self._history_cancels.values()), utc=True)
            bookings.iloc[rows, bookings.columns.get_loc("cancelled_at")] = at  # rows are positions
        if self._chunks:
            raw = pa.concat_tables(self._chunks).to_pandas()
            raw["cancelled_at"] = raw["booking_id"].map(self._new_cancels)
            new, problems = validate(raw, BOOKINGS, "archived bookings")
            problems.raise_if_any()  # the contract is stricter than the history: a failure here is a bug
            bookings = pd.concat([bookings, new], ignore_index=True)
        bookings = bookings.sort_values("event_time", kind="stable").reset_index(drop=True)
        items, customers = h.items, h.customers
        if self._new_items:
            added, problems = validate(pd.concat(self._new_items, ignore_index=True), ITEMS, "listed items")
            problems.raise_if_any()
            items = pd.concat([items, added], ignore_index=True)
        if self._new_customers:
            added, problems = validate(pd.DataFrame([customer_row(c) for c in self._new_customers]), CUSTOMERS,
                                       "new customers")  # fmt: skip
            problems.raise_if_any()
            customers = pd.concat([customers, added], ignore_index=True)
        self.report.items_added, self.report.customers_added = len(self._new_items), len(self._new_customers)
        return History(items, customers, bookings)


def write_atomically(frame: pd.DataFrame, table: Table, path: Path) -> None:
    """The writer's exact Arrow types under a temporary name, fsynced, then renamed over ``path``
    and the directory fsynced: a crash leaves the old file or the new one, never a torn one."""
    present = [c.name for c in table.columns if c.name in frame.columns]
    arrow = pa.Table.from_pandas(frame[present], schema=table.arrow_schema(present), preserve_index=False)
    tmp = path.with_name(f".{path.name}.archive-{os.getpid()}")
    pq.write_table(arrow, tmp, compression="zstd")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_result(before: History, after: History, directory: Path) -> None:
    """Items and customers before bookings: a crash in between leaves extra catalogue rows, never
    a booking of an unknown item or customer."""
    items, customers, bookings = history_paths(directory)
    if len(after.items) != len(before.items):
        write_atomically(after.items, ITEMS, items)
    if len(after.customers) != len(before.customers):
        write_atomically(after.customers, CUSTOMERS, customers)
    write_atomically(after.bookings, BOOKINGS, bookings)


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One archive at a time on a history: a second waits, then starts from the first's result."""
    with open(directory / ".archive.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _live_items(settings: Settings) -> Callable[[], pd.DataFrame]:
    def items() -> pd.DataFrame:
        from streaming.catalogue.live import export

        return export(settings)[0]

    return items


def archive(settings: Settings, before_commit: Callable[[ArchiveReport], None] | None = None,
            progress: Callable[[int, int], None] | None = None) -> ArchiveReport:  # fmt: skip
    """Append the bookings topic's new records to the history; ``before_commit`` runs between
    the history's write and the offsets' commit (tests kill the process there)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from rental.connections import kafka_options

    directory = settings.history_dir
    missing = [p.name for p in history_paths(directory) if not p.exists()]
    if missing:
        raise TableError(f"no booking history in {directory} (missing {', '.join(missing)}) to append to")
    report = ArchiveReport()
    with _exclusive(directory):
        history = load_history(*history_paths(directory))
        consumer = KafkaConsumer(**kafka_options(settings), group_id=settings.history_archive_group_id,
                                 enable_auto_commit=False, client_id="history-archive",
                                 allow_auto_create_topics=False)  # fmt: skip
        try:
            topic = settings.topic_bookings
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not parts:
                report.topic_missing = True
                log.warning("history archive: no topic %s, nothing to append", topic)
                return _finish(report, history)
            consumer.assign(parts)
            ends, firsts = consumer.end_offsets(parts), consumer.beginning_offsets(parts)
            for tp in parts:
                committed = consumer.committed(tp)
                start = firsts[tp] if committed is None or committed < 0 else max(committed, firsts[tp])
                report.lost_to_retention += max(0, firsts[tp] - committed) if committed is not None else 0
                consumer.seek(tp, start)
            total = sum(max(0, ends[tp] - consumer.position(tp)) for tp in parts)
            latest = max(datetime.now(UTC), settings.stream_now or datetime.min.replace(tzinfo=UTC))
            appender = Appender(history, _live_items(settings),
                                latest + timedelta(seconds=settings.stream_max_future_skew_s), report)  # fmt: skip
            while any(consumer.position(tp) < ends[tp] for tp in parts):
                for tp, records in consumer.poll(timeout_ms=1_000, max_records=POLL_RECORDS).items():
                    for record in records:
                        if record.offset < ends[tp]:
                            report.read += 1
                            appender.add_record(record.value)
                if progress:
                    progress(report.read, total)
            after = history
            if appender.changed:
                after = appender.result()
                write_result(history, after, directory)
            if before_commit:
                before_commit(report)
            consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in parts})
            report.committed = {tp.partition: ends[tp] for tp in parts}
            return _finish(report, after)
        finally:
            consumer.close(autocommit=False)


def _finish(report: ArchiveReport, history: History) -> ArchiveReport:
    times = history.bookings["event_time"]
    report.bookings = len(times)
    report.span = (times.min().to_pydatetime(), times.max().to_pydatetime()) if len(times) else None
    return report
