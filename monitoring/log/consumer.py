"""The prediction log's Kafka loop: ``predictions`` and ``bookings`` in, Parquet log out.

One process owns every partition of both topics (the join needs one watermark over all of
them); a lock on the log's folder keeps a second one out. Its group (``monitor_group_id``) holds
the committed offsets, so lag shows in Kafka's tools, but the offsets it resumes from are the
ones saved with its state.

Each checkpoint, in this order: close the windows the watermark has passed, write the quotes,
outcomes and rejected records since the last one as part n of each day, save the join's state
with the next offsets as checkpoint n, and only then commit the offsets. A crash anywhere in
between restarts from checkpoint n - 1, deletes any part n, and replays the same records into
the same state: no row is lost or written twice. SIGTERM and SIGINT finish with a checkpoint.

A record that is not a valid quote or booking is not a reason to stop: it goes to the log's
``rejected`` table with its reason and bytes, is counted, and the first few are logged.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from monitoring.log import state, store
from monitoring.log.join import Booking, Ledger, Rules
from monitoring.log.records import QuoteError, decode_quote, quote_key, quote_row, rejected_row
from rental.connections import kafka_options
from rental.settings import Settings
from streaming.events import CREATED, EventError, decode, to_us
from streaming.wire.record_blocks import BadBatch, RecordColumns, read_blocks, warm_up

LOGGED_REJECTS = 20  # rejected records described in the log per run; all are in the table
log = logging.getLogger(__name__)


class MonitorRefused(RuntimeError):
    """The monitor cannot start as things are; the message says what to do."""


class Monitor:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.settings, self.clock = settings, clock
        self.rules = Rules.from_settings(settings)
        self.topics = {settings.topic_predictions: "quotes", settings.topic_bookings: "bookings"}
        try:
            self._lock = state.lock(settings)
            saved = state.load(settings, self.rules, clock())
        except state.StateError as exc:
            raise MonitorRefused(str(exc)) from None
        if saved is None and store.has_parts(settings):
            raise MonitorRefused(f"{settings.monitor_log_dir} holds log parts but no saved state, so a start "
                                 f"would log their quotes again: delete it to rebuild the log from the topics")  # fmt: skip
        self.seq = saved.seq if saved else 0
        removed = store.remove_after(settings, self.seq)
        if removed:
            log.info("removed %d log parts of an unfinished checkpoint after #%d", removed, self.seq)
        self.ledger = saved.ledger if saved else Ledger(self.rules, clock())
        self.counters: Counter[str] = saved.counters if saved else Counter()
        self.positions: dict[TopicPartition, int] = {}
        self.quotes: list[dict] = []
        self.outcomes: list[dict] = []
        self.rejected: list[dict] = []
        self._dirty = False
        self._stop = False
        self.last_checkpoint = clock()
        warm_up()  # the record reader's compiled pass, loaded now rather than in the first poll
        try:
            self.consumer = self._assign(saved.offsets if saved else {})
        except KafkaError as exc:
            self._lock.close()
            raise MonitorRefused(f"Kafka at {settings.bootstrap_servers} did not answer ({exc}): "
                                 "`rental services up` starts the local broker") from None  # fmt: skip
        except BaseException:
            self._lock.close()
            raise

    # -- Kafka ----------------------------------------------------------------------------------
    def _assign(self, offsets: dict[tuple[str, int], int]) -> KafkaConsumer:
        s = self.settings
        consumer = KafkaConsumer(**kafka_options(s), group_id=s.monitor_group_id, client_id="rental-monitor",
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 max_poll_records=s.monitor_max_poll_records,
                                 max_partition_fetch_bytes=4 * 1024 * 1024)  # fmt: skip
        try:
            known = consumer.topics()
            missing = [t for t in self.topics if t not in known]
            if missing:
                raise MonitorRefused(f"topic(s) {', '.join(missing)} do not exist on {s.bootstrap_servers}: "
                                     "`rental services up` creates the project's topics")  # fmt: skip
            parts = [TopicPartition(t, p) for t in self.topics for p in sorted(consumer.partitions_for_topic(t))]
        except BaseException:
            consumer.close(autocommit=False)
            raise
        read_blocks(consumer)
        consumer.assign(parts)
        fresh = []
        for tp in parts:
            saved = offsets.get((tp.topic, tp.partition))
            if saved is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, saved)
                self.positions[tp] = saved
        if fresh:
            consumer.seek_to_beginning(*fresh)
        return consumer

    def poll_once(self, timeout_ms: int = 200) -> int:
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.settings.monitor_max_poll_records)
        n = 0
        for tp, blocks in batches.items():
            source = self.topics[tp.topic]
            for block in blocks:
                if isinstance(block, BadBatch):
                    self._reject(tp.topic, tp.partition, block.first_offset, block.letter_reason, block.raw)
                    self.positions[tp] = block.next_offset
                    continue
                n += self._read(source, block)
                self.positions[tp] = int(block.offsets[-1]) + 1
        if n:
            self._dirty = True
        return n

    def _read(self, source: str, block: RecordColumns) -> int:
        now, ends, values = self.clock(), block.value_ends.tolist(), block.values
        start = 0
        for i, end in enumerate(ends):
            payload = values[start:end].tobytes()
            start = end
            if source == "quotes":
                self._quote(block, i, payload, now)
            else:
                self._booking(block, i, payload, now)
        self.counters[f"records_{source}"] += len(ends)
        return len(ends)

    def _quote(self, block: RecordColumns, i: int, payload: bytes, now: float) -> None:
        offset = int(block.offsets[i])
        try:
            row = quote_row(decode_quote(payload), block.partition, offset)
        except QuoteError as exc:
            self._reject(block.topic, block.partition, offset, f"not a quote: {exc}", payload)
            return
        status = self.ledger.add_quote(quote_key(row), now)
        if status == "new":
            self.quotes.append(row)
        elif status == "too_late":
            window_s = self.settings.monitor_outcome_window_s + self.settings.monitor_retention_s
            self._reject(block.topic, block.partition, offset,
                         f"quoted more than {window_s:g} s (outcome window + retention) before the watermark: "
                         "too late to join, and not to be told from a repeat", payload)  # fmt: skip

    def _booking(self, block: RecordColumns, i: int, payload: bytes, now: float) -> None:
        try:
            event = decode(payload)
        except EventError as exc:
            self._reject(block.topic, block.partition, int(block.offsets[i]), f"not a booking event: {exc}", payload)
            return
        if event.event_type == CREATED:
            booking = Booking(to_us(event.event_time), event.event_id, event.booking_id, event.customer_id,
                              event.price_per_day)  # fmt: skip
            self.ledger.add_booking(booking, event.item_id, now)
        else:
            self.ledger.add_cancel(event.event_id, event.booking_id, to_us(event.event_time), now)

    def _reject(self, topic: str, partition: int, offset: int, reason: str, payload: bytes) -> None:
        self.counters["rejected"] += 1
        if self.counters["rejected_logged"] < LOGGED_REJECTS:
            self.counters["rejected_logged"] += 1
            log.warning("rejected %s-%d@%d: %s", topic, partition, offset, reason)
        self.rejected.append(rejected_row(topic, partition, offset, reason, payload, to_us(datetime.now(UTC))))

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint(self) -> bool:
        """Close what the watermark allows, then make it durable in the order that loses nothing;
        False if there was nothing to save."""
        self.outcomes += self.ledger.close(self.clock())
        self.last_checkpoint = self.clock()
        if not (self._dirty or self.outcomes or self.rejected):
            return False
        seq = self.seq + 1
        for table, rows in (("quotes", self.quotes), ("outcomes", self.outcomes), ("rejected", self.rejected)):
            store.write_parts(self.settings, seq, table, rows)
        self.counters["quotes_logged"] += len(self.quotes)
        self.counters["outcomes_logged"] += len(self.outcomes)
        offsets = {(tp.topic, tp.partition): offset for tp, offset in self.positions.items()}
        state.save(self.settings, state.Checkpoint(seq, offsets, self.ledger, self.counters))
        self.seq = seq
        self.quotes, self.outcomes, self.rejected, self._dirty = [], [], [], False
        self._commit()
        return True

    def _commit(self) -> None:
        """Kafka's copy of the offsets, for lag; the saved state's are the ones resumed from."""
        try:
            self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self.positions.items()})
        except KafkaError as exc:
            self.counters["commit_failures"] += 1
            log.warning("offset commit failed (%s); the saved state stands and the next checkpoint retries", exc)

    def lag(self) -> int:
        ends = self.consumer.end_offsets(list(self.consumer.assignment()))
        return sum(max(0, end - self.positions.get(tp, 0)) for tp, end in ends.items())

    # -- the loop -------------------------------------------------------------------------------
    def stop(self, *_args) -> None:
        self._stop = True

    def run(self, max_seconds: float | None = None, until_idle: float | None = None,
            on_poll: Callable[[Monitor], None] | None = None) -> None:  # fmt: skip
        """Until SIGTERM/SIGINT, ``max_seconds``, or (``until_idle``) caught up and quiet that long."""
        if threading.current_thread() is threading.main_thread():  # only there can handlers be set
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        started = quiet_since = self.clock()
        every = self.settings.monitor_checkpoint_every_s
        try:
            while not self._stop:
                n = self.poll_once()
                now = self.clock()
                if self.clock() - self.last_checkpoint >= every:
                    self.checkpoint()
                if on_poll:
                    on_poll(self)
                if max_seconds is not None and now - started >= max_seconds:
                    break
                if until_idle is not None:
                    if n:
                        quiet_since = now
                    elif now - quiet_since >= until_idle and self.lag() == 0:
                        break
            self.checkpoint()
        finally:
            self.close()

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        self._lock.close()

    @property
    def open_quotes(self) -> int:
        return len(self.ledger.open)

    @property
    def watermark(self) -> datetime | None:
        value = self.ledger.watermark.value
        return None if value is None else datetime.fromtimestamp(value / 1e6, UTC)
