"""Replaying dead letters: bookings rejected for an unknown item, sent again once the item exists.

``replay`` reads ``bookings.dlq`` from where its consumer group left off, picks the letters
whose reason matches (by default the unknown-item reason of ``runner``) and whose source is
``bookings``, and produces each one's original payload to ``bookings`` again, keyed by its item
id as the app does, when the live catalogue (the items table and the items topic) now has the
item. Replaying is idempotent downstream (events are de-duplicated by event id); it is also
not repeated needlessly: the group's committed offset is the first letter still waiting for its
item (everything before it is done), and the commit's metadata lists the letters after it that
were replayed already, so the next run skips them. A truncated letter (``payload_truncated``)
has lost its payload's end and cannot be replayed.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from rental.connections import kafka_options
from rental.settings import Settings
from streaming.consumer.dead_letters import UNKNOWN_ITEM_REASON, original_payload
from streaming.events import EventError, decode
from streaming.features.pipeline import Catalogue

MAX_METADATA_CHARS = 3_000  # the broker keeps up to 4,096 characters of a commit's metadata


@dataclass
class ReplayReport:
    read: int = 0  # letters read this run
    replayed: list[str] = field(default_factory=list)  # event ids produced to bookings again
    skipped_done: int = 0  # replayed by an earlier run
    other_reasons: int = 0  # letters this filter does not pick
    left: Counter = field(default_factory=Counter)  # why a picked letter was not replayed -> how many
    waiting: list[str] = field(default_factory=list)  # items still unknown, their letters kept for later
    committed: int | None = None  # the group's offset after this run


def group_for(settings: Settings, reason: str) -> str:
    """One group per filter, so replaying another reason later starts from its own beginning."""
    suffix = "" if reason == UNKNOWN_ITEM_REASON else "-" + hashlib.sha1(reason.encode()).hexdigest()[:8]
    return f"{settings.consumer_group_prefix}-dlq-replay{suffix}"


def _ranges(offsets: list[int]) -> str:
    out, i = [], 0
    while i < len(offsets):
        j = i
        while j + 1 < len(offsets) and offsets[j + 1] == offsets[j] + 1:
            j += 1
        out.append(str(offsets[i]) if i == j else f"{offsets[i]}-{offsets[j]}")
        i = j + 1
    text = ",".join(out)
    while len(text) > MAX_METADATA_CHARS:  # too many to remember: the later ones may be sent twice
        text = text.rsplit(",", 1)[0]
    return text


def _parse_ranges(text: str | None) -> set[int]:
    done: set[int] = set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        try:
            low, _, high = part.partition("-")
            done.update(range(int(low), int(high or low) + 1))
        except ValueError:
            return set()  # metadata another tool wrote: remember nothing rather than misread it
    return done


def replay(settings: Settings, catalogue: Catalogue, reason: str = UNKNOWN_ITEM_REASON, dry_run: bool = False,
           from_beginning: bool = False, progress: Callable[[int, int], None] | None = None) -> ReplayReport:  # fmt: skip
    """Replay the picked letters up to the DLQ's end offsets now; ``progress(done, total)``."""
    report = ReplayReport()
    group = group_for(settings, reason)
    consumer = KafkaConsumer(**kafka_options(settings), group_id=group, enable_auto_commit=False,
                             client_id="dlq-replay", fetch_max_bytes=50_000_000)  # fmt: skip
    producer = None if dry_run else KafkaProducer(**kafka_options(settings), acks="all",
                                                  enable_idempotence=True, client_id="dlq-replay")  # fmt: skip
    try:
        parts = [TopicPartition(settings.topic_bookings_dlq, p)
                 for p in sorted(consumer.partitions_for_topic(settings.topic_bookings_dlq) or ())]  # fmt: skip
        if not parts:
            return report
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        starts, done = {}, {}
        for tp in parts:
            committed = None if from_beginning else consumer.committed(tp, metadata=True)
            if committed is not None and committed.offset >= 0:
                starts[tp], done[tp] = committed.offset, _parse_ranges(committed.metadata)
                consumer.seek(tp, committed.offset)
            else:
                starts[tp], done[tp] = consumer.beginning_offsets([tp])[tp], set()
                consumer.seek(tp, starts[tp])
        total = sum(max(0, ends[tp] - starts[tp]) for tp in parts)
        waiting_at: dict[TopicPartition, int] = {}
        sent_at: dict[TopicPartition, list[int]] = {tp: [] for tp in parts}
        futures = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for tp, records in consumer.poll(timeout_ms=1_000, max_records=10_000).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    report.read += 1
                    outcome = _one(settings, catalogue, reason, record, done[tp], report)
                    if outcome == "waiting":
                        waiting_at.setdefault(tp, record.offset)
                    elif isinstance(outcome, tuple):
                        item_id, payload, event_id = outcome
                        report.replayed.append(event_id)
                        sent_at[tp].append(record.offset)
                        if producer is not None:
                            futures.append(producer.send(settings.topic_bookings, key=item_id.encode(), value=payload))
                if progress:
                    progress(report.read, total)
        if producer is None:
            return report
        producer.flush(timeout=settings.stream_kafka_timeout_s)
        for future in futures:
            future.get(timeout=settings.stream_kafka_timeout_s)  # all in Kafka before the commit says so
        commits = {}
        for tp in parts:
            at = waiting_at.get(tp, ends[tp])
            remembered = sorted(o for o in done[tp] | set(sent_at[tp]) if o >= at) if tp in waiting_at else []
            commits[tp] = OffsetAndMetadata(at, _ranges(remembered), -1)
            report.committed = at
        consumer.commit(commits)
        return report
    finally:
        consumer.close(autocommit=False)
        if producer is not None:
            producer.close()


def _one(settings: Settings, catalogue: Catalogue, reason: str, record, done: set[int],
         report: ReplayReport) -> str | tuple[str, bytes, str] | None:  # fmt: skip
    """What to do with one letter: None (not picked, or done), "waiting" (its item is still
    unknown: keep it for a later run), "left" (never replayable), or what to send."""
    try:
        letter = json.loads(record.value)
        source = letter["source"]["topic"]
        why = str(letter["reason"])
    except (ValueError, TypeError, KeyError):
        report.other_reasons += 1
        return None
    if source != settings.topic_bookings or reason not in why:
        report.other_reasons += 1
        return None
    if record.offset in done:
        report.skipped_done += 1
        return None
    if letter.get("payload_truncated"):
        report.left["payload truncated (only its first bytes were kept): cannot be replayed"] += 1
        return "left"
    try:
        payload = original_payload(letter)
        event = decode(payload)
    except (EventError, ValueError) as exc:
        report.left[f"not a valid event ({str(exc)[:80]})"] += 1
        return "left"
    if event.item_id not in catalogue.category:
        report.left["item still not in the catalogue (kept for a later replay)"] += 1
        report.waiting.append(event.item_id)
        return "waiting"
    return event.item_id, payload, event.event_id
