"""Item attributes for listed and changed items, online (Redis) and offline (Parquet).

The pricing service knows an item by its row in the item attributes view, so a listing reaches
the service when that row is written. One consumer group (``<prefix>-catalogue``) reads the
items topic: each partition has one writer however many items stages run, and it commits only
after the rows and dead letters it covers are written. It runs as a thread of the items stage
(which owns the item keys), started in the stage's own process.

Rows go through Feast's own writer (``write_to_online_store``): listings come at catalogue
rates, not booking rates. A listing equal to the item's stored row writes nothing (publishing
the seed table again costs reads, not rows). A new item's row is valid from its listing date,
as the backfill writes it; a change is valid from the moment it was produced, and always after
the stored row (Feast keeps the newer stamp). The Parquet row is written before Redis, so a
writer that dies between the two writes the same row again after its restart, never neither.
An invalid listing is a dead letter in ``bookings.dlq`` naming the items topic as its source.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pandas as pd
from feast import FeatureStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type
from kafka import KafkaConsumer, KafkaProducer

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.catalogue.listing import Listing, ListingError, decode_listing
from streaming.consumer.dead_letters import DeadLetters
from streaming.feature_store.offline import write_rows
from streaming.feature_store.views import ITEM_ATTRIBUTES

log = logging.getLogger(__name__)

VIEW = ITEM_ATTRIBUTES.name
POLL_MS = 1_000
RETRY_S = 2.0


def catalogue_group(settings: Settings) -> str:
    return f"{settings.consumer_group_prefix}-catalogue"


def _stored_python(values: dict[str, Value] | None) -> dict | None:
    if values is None:
        return None
    return {name: feast_value_type_to_python_type(value) for name, value in values.items()}


def _same(stored: dict | None, listing: Listing) -> bool:
    if stored is None:
        return False
    wanted = listing.attributes()
    for name, value in wanted.items():
        have = stored.get(name)
        if isinstance(value, datetime):
            have = have if have is None or isinstance(have, datetime) else datetime.fromtimestamp(have, UTC)
            if have is None or have.astimezone(UTC) != value:
                return False
        elif have != value:
            return False
    return True


class AttributesWriter:
    """The item attributes rows of what is listed on the items topic."""

    def __init__(self, settings: Settings, store: FeatureStore, producer: KafkaProducer):
        self.settings, self.store = settings, store
        self.letters = DeadLetters(producer, settings.topic_bookings_dlq, settings.dlq_max_letter_bytes)
        self.written = 0  # rows written (new or changed items)
        self.unchanged = 0  # listings equal to the stored row
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="catalogue-writer", daemon=True)

    def start(self) -> AttributesWriter:
        self._thread.start()
        return self

    def _consumer(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            **kafka_options(self.settings),
            group_id=catalogue_group(self.settings),
            client_id="catalogue-writer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            allow_auto_create_topics=False,
            metadata_max_age_ms=5_000,  # a topic created after the start is found soon
        )
        consumer.subscribe([self.settings.topic_items])
        return consumer

    def _run(self) -> None:
        consumer = None
        while not self._stop.is_set():
            try:
                consumer = consumer or self._consumer()
                batches = consumer.poll(timeout_ms=POLL_MS, max_records=5_000)
                records = [record for part in batches.values() for record in part]
                if records:
                    self.write(records)
                    consumer.commit()
            except Exception as exc:  # Redis or Kafka away: resume from the committed offsets
                log.warning("catalogue: item attributes not written (%r); retrying", exc)
                if consumer is not None:
                    consumer.close(autocommit=False)
                consumer = None
                self._stop.wait(RETRY_S)
        if consumer is not None:
            consumer.close(autocommit=False)

    def write(self, records: list) -> int:
        """The rows of ``records``' valid listings that change what is stored; dead letters for
        the invalid ones. Returns the rows written; raises if any write or letter failed."""
        latest: dict[str, tuple[Listing, int]] = {}
        for record in records:
            if record.value is None:  # a tombstone: see ``follower.apply_record``
                continue
            try:
                listing = decode_listing(record.key, record.value)
            except ListingError as exc:
                self.letters.send(record, str(exc))
                continue
            latest[listing.item_id] = (listing, record.timestamp)
        rows = self._changed_rows(latest)
        if rows:
            frame = pd.DataFrame(rows)
            write_rows(self.settings, VIEW, frame, tag="catalogue")
            self.store.write_to_online_store(VIEW, frame)
            self.written += len(rows)
        for future in self.letters.take_sent():
            future.get(timeout=self.settings.stream_kafka_timeout_s)
        return len(rows)

    def _changed_rows(self, latest: dict[str, tuple[Listing, int]]) -> list[dict]:
        if not latest:
            return []
        ids = list(latest)
        view = self.store.get_feature_view(VIEW)
        keys = [EntityKey(join_keys=[ITEM_ATTRIBUTES.join_key], entity_values=[Value(string_val=i)]) for i in ids]
        stored = self.store._get_provider().online_read(self.store.config, view, keys)
        rows = []
        for item_id, (at, values) in zip(ids, stored, strict=True):
            listing, produced_ms = latest[item_id]
            # Feast answers an absent key with empty values stamped at the epoch.
            present = bool(values) and any(v.WhichOneof("val") for v in values.values())
            if present and _same(_stored_python(values), listing):
                self.unchanged += 1
                continue
            if not present or at is None:
                stamp = listing.valid_from  # a new item: valid from its listing, as the backfill has it
            else:
                produced = datetime.fromtimestamp(produced_ms / 1000, UTC)
                stamp = max(produced, at.astimezone(UTC) + timedelta(microseconds=1))
            rows.append({ITEM_ATTRIBUTES.join_key: item_id, "event_timestamp": stamp, **listing.attributes()})
        return rows

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
