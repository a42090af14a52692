"""Rejected events go to ``bookings.dlq`` with the reason and the original bytes: nothing is lost."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from kafka import KafkaProducer


class DeadLetters:
    def __init__(self, producer: KafkaProducer, topic: str):
        self.producer = producer
        self.topic = topic
        self.count = 0
        self.reasons: dict[str, int] = {}
        self._sent: list = []

    def send(self, record, reason: str) -> None:
        """``record`` is the consumed Kafka record; its payload is kept exactly as it came."""
        value: bytes = record.value or b""
        try:
            payload, encoding = value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(value).decode(), "base64"
        letter = {
            "reason": reason,
            "payload": payload,
            "payload_encoding": encoding,
            "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
            "rejected_at": datetime.now(UTC).isoformat(),
        }
        self._sent.append(self.producer.send(self.topic, key=record.key, value=json.dumps(letter).encode()))
        self.count += 1
        kind = reason.split(":", 1)[0]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1

    def take_sent(self) -> list:
        """Futures of the letters sent since the last call, for the checkpoint to verify."""
        sent, self._sent = self._sent, []
        return sent
