"""Rejected events go to ``bookings.dlq`` with the reason and the original bytes: nothing is lost.

A letter is bounded (``RENTAL_DLQ_MAX_LETTER_BYTES``, well under the producer's 1 MB request
limit): a letter too large to send would raise in the stage, so one oversized payload would stop
it. When the original does not fit, the letter keeps its first bytes (cut at a character
boundary when it is UTF-8) with ``payload_truncated``, its full ``payload_length`` and its
``payload_sha256``, enough to recognise it and to find it at its source offset.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from kafka import KafkaProducer

MAX_REASON_CHARS = 1_000
MAX_KEY_BYTES = 1_024


# How the items stage words a booking of an item the catalogue lacks: ``rental dlq replay``
# picks these letters by it.
UNKNOWN_ITEM_REASON = "item_id: unknown item"


def _payload(value: bytes) -> tuple[str, str]:
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode(), "base64"


def original_payload(letter: dict) -> bytes:
    """A letter's payload bytes as they were sent (``_payload`` read back); a truncated letter's
    kept prefix only."""
    text = letter.get("payload") or ""
    return base64.b64decode(text) if letter.get("payload_encoding") == "base64" else text.encode()


def _prefix(value: bytes, n: int) -> bytes:
    """The first ``n`` bytes, less a UTF-8 character cut in half (so text stays text)."""
    while 0 < n < len(value) and value[n] & 0xC0 == 0x80:
        n -= 1
    return value[:n]


def letter_bytes(record, reason: str, max_bytes: int) -> bytes:
    """The letter for ``record`` (a consumed Kafka record) as JSON of at most ``max_bytes``."""
    value: bytes = record.value or b""
    letter = {
        "reason": reason[:MAX_REASON_CHARS],
        "payload": None,
        "payload_encoding": None,
        "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        "rejected_at": datetime.now(UTC).isoformat(),
    }
    key = record.key
    if key is not None and len(key) > MAX_KEY_BYTES:  # the letter's own key is cut to its first bytes
        letter |= {"key_length": len(key), "key_sha256": hashlib.sha256(key).hexdigest()}
    letter["payload"], letter["payload_encoding"] = _payload(value)
    out = json.dumps(letter).encode()
    if len(out) <= max_bytes:
        return out
    letter |= {"payload_truncated": True, "payload_length": len(value),
               "payload_sha256": hashlib.sha256(value).hexdigest()}  # fmt: skip
    n = max_bytes
    while True:  # JSON escapes and base64 grow the bytes; shrink the prefix until the letter fits
        letter["payload"], letter["payload_encoding"] = _payload(_prefix(value, n))
        out = json.dumps(letter).encode()
        if len(out) <= max_bytes or n == 0:
            return out
        n = max(0, min(n - 1, n * max_bytes // len(out) - 64))


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str, max_letter_bytes: int):  # RENTAL_DLQ_MAX_LETTER_BYTES
        self.producer = producer
        self.topic = topic
        self.max_letter_bytes = max_letter_bytes
        self.count = 0
        self.reasons: dict[str, int] = {}
        self._sent: list = []

    def send(self, record, reason: str) -> None:
        """``record`` is the consumed Kafka record; its payload is kept exactly as it came, or
        truncated with its length and hash when the letter would pass its bound."""
        key = record.key if record.key is None or len(record.key) <= MAX_KEY_BYTES else record.key[:MAX_KEY_BYTES]
        value = letter_bytes(record, reason, self.max_letter_bytes)
        self._sent.append(self.producer.send(self.topic, key=key, value=value))
        self.count += 1
        kind = reason.split(":", 1)[0]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1

    def take_sent(self) -> list:
        """Futures of the letters sent since the last call, for the checkpoint to verify."""
        sent, self._sent = self._sent, []
        return sent
