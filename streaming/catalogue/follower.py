"""Every stage's catalogue kept current from the compacted ``items`` topic, without a restart.

``read_to_end`` rebuilds a catalogue from the topic's beginning up to its end offsets (the
supervisor does it once, before it forks the stages). ``Follower`` then runs in each stage
process (threads do not survive a fork): a thread with all of the topic's partitions assigned,
no group (every stage needs every item), applying each listing in place. When an event names an
item the catalogue lacks, ``catch_up`` (called on the stage's own thread) asks the broker for
the topic's end offsets and waits until the thread has applied everything before them: an item
listed before its booking was produced is then known, and only an item that is really unknown
goes to the DLQ. An invalid listing is skipped here; the attributes writer (``writer``), which
reads each partition once, sends it to the DLQ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.catalogue.listing import Listing, ListingError, decode_listing
from streaming.features.pipeline import Catalogue

log = logging.getLogger(__name__)

POLL_MS = 500  # a fetch waits up to this long for new listings (the broker answers as they come)
CATCH_UP_TIMEOUT_S = 5.0  # an unknown item waits at most this long for the follower, then is a dead letter
NEW_TOPIC_CHECK_S = 5.0  # a topic created after the start is found within this long


def listing_consumer(settings: Settings, client_id: str) -> KafkaConsumer:
    """A consumer of no group: the items topic is read whole by every reader."""
    return KafkaConsumer(
        **kafka_options(settings),
        enable_auto_commit=False,
        client_id=client_id,
        allow_auto_create_topics=False,  # a missing topic is waited for, never made with broker defaults
        request_timeout_ms=int(max(settings.stream_kafka_timeout_s, 30) * 1000),
    )


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def apply_record(catalogue: Catalogue, record) -> Listing | None:
    """One record of the items topic into ``catalogue``; the listing, or None when it is not one.
    A tombstone (null value) changes nothing: an item's bookings in flight still need its
    category, and its features simply stop moving once it is no longer booked."""
    if record.value is None:
        return None
    try:
        listing = decode_listing(record.key, record.value)
    except ListingError:
        return None
    catalogue.put(listing.item_id, listing.category, listing.retail_price, listing.units)
    return listing


def read_to_end(settings: Settings, catalogue: Catalogue, timeout_s: float = 120.0,
                on_listing: Callable[[Listing], None] | None = None) -> Catalogue:  # fmt: skip
    """Apply the topic from where ``catalogue.followed`` leaves off (its beginning at first) up
    to its end offsets now; record the new positions in ``catalogue.followed``. A topic that
    does not exist yet adds nothing. ``on_listing`` sees each valid listing, in topic order."""
    consumer = listing_consumer(settings, "catalogue-reader")
    try:
        parts = _partitions(consumer, settings.topic_items)
        if not parts:
            return catalogue
        consumer.assign(parts)
        _seek(consumer, parts, catalogue.followed)
        ends = consumer.end_offsets(parts)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the catalogue topic {settings.topic_items} was not read to its end in {timeout_s:.0f} s"
                )
            for records in consumer.poll(timeout_ms=POLL_MS, max_records=50_000).values():
                for record in records:
                    listing = apply_record(catalogue, record)
                    if on_listing and listing is not None:
                        on_listing(listing)
        catalogue.followed.update({tp.partition: consumer.position(tp) for tp in parts})
        return catalogue
    finally:
        consumer.close()


def _seek(consumer: KafkaConsumer, parts: list[TopicPartition], followed: dict[int, int]) -> None:
    for tp in parts:
        if tp.partition in followed:
            consumer.seek(tp, followed[tp.partition])
        else:
            consumer.seek_to_beginning(tp)


class Follower:
    """A thread applying new listings to ``catalogue`` in place, and the stage's catch-up."""

    def __init__(self, settings: Settings, catalogue: Catalogue):
        self.settings, self.catalogue = settings, catalogue
        self.topic = settings.topic_items
        self.applied = 0  # listings applied since the start
        self.catch_ups = 0
        self._positions: dict[int, int] = dict(catalogue.followed)
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._ends = listing_consumer(settings, "catalogue-ends")  # the stage thread's: end offsets
        self._thread = threading.Thread(target=self._run, name="catalogue-follower", daemon=True)

    def start(self) -> Follower:
        self.catalogue.on_unknown(self.catch_up)
        self._thread.start()
        return self

    def catch_up(self, timeout_s: float = CATCH_UP_TIMEOUT_S) -> bool:
        """Wait until every listing produced before now is applied; False if that took too long
        (the events stay unknown and go to the DLQ, from where ``rental dlq replay`` brings them back)."""
        self.catch_ups += 1
        try:
            parts = _partitions(self._ends, self.topic)
            ends = self._ends.end_offsets(parts) if parts else {}
        except KafkaError as exc:
            log.warning("catalogue: end offsets of %s not read (%r); unknown items go to the DLQ", self.topic, exc)
            return False
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while any(self._positions.get(tp.partition, 0) < end for tp, end in ends.items()):
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    log.warning("catalogue: %s not caught up in %.1f s", self.topic, timeout_s)
                    return False
                self._changed.wait(left)
        return True

    def _run(self) -> None:
        consumer, parts, looked = None, [], 0.0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = listing_consumer(self.settings, "catalogue-follower")
                if not parts:
                    if time.monotonic() - looked < NEW_TOPIC_CHECK_S:
                        self._stop.wait(0.2)
                        continue
                    looked = time.monotonic()
                    parts = _partitions(consumer, self.topic)
                    if not parts:
                        consumer.close()  # metadata of a missing topic is asked for again on a fresh client
                        consumer = None
                        continue
                    consumer.assign(parts)
                    _seek(consumer, parts, self._positions)
                batches = consumer.poll(timeout_ms=POLL_MS, max_records=10_000)
                n = 0
                for records in batches.values():
                    for record in records:
                        n += apply_record(self.catalogue, record) is not None
                self.applied += n
                positions = {tp.partition: consumer.position(tp) for tp in parts}
                with self._changed:
                    self._positions.update(positions)
                    self._changed.notify_all()
            except Exception as exc:  # a broker away: try again with a fresh client from the same positions
                log.warning("catalogue: following %s failed (%r); retrying", self.topic, exc)
                if consumer is not None:
                    consumer.close()
                consumer, parts = None, []
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close()

    def close(self) -> None:
        self.catalogue.on_unknown(None)
        self._stop.set()
        self._thread.join(timeout=10)
        self._ends.close()
