"""Every quote to Kafka ``predictions``, never on the response's path.

A request only appends its record to a bounded in-memory deque (well under a microsecond, and
no thread is woken). One daemon thread wakes every ``DRAIN_S``, takes everything waiting, and
validates, serialises and hands each record to a kafka-python producer, whose own thread
batches and sends them. Waking per record instead (a ``queue.Queue``) cost the worker about a
quarter of its quotes per second in GIL hand-offs between the request thread and this one.
When Kafka is down the thread keeps trying to connect while the deque holds what arrives;
a full deque drops records, and failed sends are counted too, so ``/health`` says how many
quotes could not be logged. Quotes are answered either way.

``reachable`` is what ``/health`` reports as ``kafka``: connected, and no quote has waited
longer than ``serve_log_unreachable_s`` without any delivery. A producer, once made, stays
"connected" through an outage while its sends time out, so being connected alone said nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from kafka.errors import KafkaError

from bento_service.schemas import PredictionRecord
from rental.settings import Settings
from streaming.producer import make_producer

log = logging.getLogger(__name__)
RECONNECT_S = 2.0
DRAIN_S = 0.02  # at most this long between a quote and its hand-over to the producer


class PredictionLog:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.topic = settings.topic_predictions
        self._waiting: deque = deque()
        self._capacity = settings.serve_log_queue
        self._producer = None
        # Each counter has one writer (the request path, this thread, or the producer's thread).
        self.dropped = self.attempted = self.not_encoded = self.logged = self.not_sent = 0
        self._unreachable_s = settings.serve_log_unreachable_s
        # Monotonic times: the last delivery Kafka acknowledged, and the last moment nothing waited.
        self._delivered_at = self._idle_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, record: dict) -> None:
        """``record``: the fields of a ``PredictionRecord``; validated and encoded off the request path."""
        if len(self._waiting) < self._capacity:
            self._waiting.append(record)  # deque appends and pops are thread-safe
        else:
            self.dropped += 1

    @property
    def connected(self) -> bool:
        return self._producer is not None

    @property
    def reachable(self) -> bool:
        """Connected, and quotes are delivered: none has waited ``serve_log_unreachable_s`` while
        no delivery came back (an idle log with nothing waiting is reachable)."""
        if not self.connected:
            return False
        if self.pending == 0:
            return True
        return time.monotonic() - max(self._delivered_at, self._idle_at) <= self._unreachable_s

    @property
    def pending(self) -> int:
        return len(self._waiting) + self.attempted - self.logged - self.not_sent

    @property
    def unlogged(self) -> int:
        return self.dropped + self.not_encoded + self.not_sent

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (up to ``timeout_s``), then stop."""
        deadline = time.monotonic() + timeout_s
        while self.connected and self._waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self._producer is not None:
            self._producer.close(timeout=max(0.1, deadline - time.monotonic()))

    def _connect(self):
        try:
            return make_producer(self.settings, client_id="pricing-service", linger_ms=250, max_block_ms=2_000,
                                 request_timeout_ms=10_000, delivery_timeout_ms=30_000)  # fmt: skip
        except (KafkaError, OSError) as exc:
            log.warning("prediction log: Kafka unavailable (%s); retrying in %.0f s", exc, RECONNECT_S)
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._producer is None:
                self._producer = self._connect()
                if self._producer is None:
                    self._stop.wait(RECONNECT_S)
                    continue
            if self.pending == 0:
                self._idle_at = time.monotonic()
            waiting = self._waiting
            for _ in range(len(waiting)):
                self._send(waiting.popleft())
            self._stop.wait(DRAIN_S)

    def _send(self, record: dict) -> None:
        try:
            payload = PredictionRecord.model_validate(record).model_dump_json().encode()
            future = self._producer.send(self.topic, key=record["item_id"], value=payload)
        except (KafkaError, OSError, ValueError) as exc:
            self.not_encoded += 1
            log.warning("prediction log: a quote could not be logged: %s", exc)
            return
        self.attempted += 1
        future.add_callback(self._sent).add_errback(self._not_sent)

    def _sent(self, _metadata) -> None:
        self.logged += 1
        self._delivered_at = time.monotonic()

    def _not_sent(self, exc) -> None:
        self.not_sent += 1
        log.warning("prediction log: Kafka did not take a quote: %s", exc)
