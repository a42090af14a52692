"""Retrain requests from monitoring (the `retrain-requests` topic) become `retrain` runs.

``handle_request`` handles one record in-process and returns what came of it: at most one run
at a time (a lock on the flows' folder), idempotent on the request's key, with a cool-down
(``flows/ledger.py`` holds the rules). ``listen`` is the long-running consumer around it: it
commits a record's offset only once its run has started (the key is in the ledger first) or it
was deliberately skipped, so a restart re-reads nothing handled and loses nothing unhandled; a
bad record is logged with its reason, kept in the ledger's list of rejects, and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.environment import flows_dir
from flows.ledger import BadRequest, Ledger, decide, parse
from flows.lock import exclusive
from rental.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: str  # "started" (the run then "completed" or "failed"), "duplicate", "cooldown", "other_model", "rejected"
    reason: str
    key: str | None = None
    flow_run_id: str | None = None
    run: dict[str, Any] = field(default_factory=dict)  # the retrain flow's result: version, promoted, ...

    @property
    def ran(self) -> bool:
        return self.flow_run_id is not None


def ledger_path(settings: Settings) -> Path:
    return flows_dir(settings) / "retrain_requests.sqlite"


def handle_request(settings: Settings, value: bytes | None, where: str = "in-process",
                   on_started: Callable[[], None] = lambda: None) -> Outcome:  # fmt: skip
    """One request: start the retrain run and wait for it, or say why not. ``on_started`` is
    called once the run's key is durably in the ledger, before the run (the listener commits
    the record's offset there)."""
    path = ledger_path(settings)
    now = datetime.now(UTC)
    with exclusive(flows_dir(settings) / "requests.lock"):
        ledger = Ledger.load(path)
        try:
            request = parse(value)
        except BadRequest as exc:
            log.warning("retrain request at %s skipped: %s", where, exc)
            ledger.reject({"at": now.isoformat(), "where": where, "reason": str(exc)})
            ledger.save(path)
            return Outcome("rejected", str(exc))
        key = request.idempotency_key
        decision = decide(ledger, request, now, settings.flow_retrain_cooldown_s, settings.registered_model_name)
        if decision.action != "start":
            log.info("retrain request %s skipped: %s", key, decision.reason)
            if decision.action != "duplicate":  # a duplicate keeps the first one's outcome
                ledger.remember(key, {"status": decision.action, "reason": decision.reason, "at": now.isoformat()})
                ledger.save(path)
            return Outcome(decision.action, decision.reason, key)
        ledger.remember(key, {"status": "started", "reason": decision.reason, "at": now.isoformat(), "where": where})
        ledger.last_started_at = now.isoformat()
        ledger.save(path)
        on_started()
        log.info("%s", decision.reason)
        outcome = _run(settings, key, decision.reason)
        ledger = Ledger.load(path)
        ran = {"status": outcome.status, "flow_run_id": outcome.flow_run_id, "version": outcome.run.get("version"),
               "promoted": outcome.run.get("promoted"), "result": outcome.reason}  # fmt: skip
        ledger.remember(key, ledger.handled.get(key, {}) | ran)
        ledger.save(path)
        return outcome


def _run(settings: Settings, key: str, reason: str) -> Outcome:
    from flows.retrain import retrain

    flow = retrain.with_options(flow_run_name=f"request-{key[:24]}")
    state = flow(settings=settings, reason="retrain request", request_key=key, return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    if state.is_completed():
        return Outcome("completed", reason, key, flow_run_id, state.result())
    return Outcome("failed", f"{reason}; the run ended {state.type.value}: {state.message}", key, flow_run_id)


def listen(settings: Settings, stop: threading.Event, topic: str | None = None,
           on_outcome: Callable[[Outcome], None] = lambda _: None, idle_s: float | None = None) -> int:  # fmt: skip
    """Consume retrain requests until ``stop`` is set (or, with ``idle_s``, once nothing has
    arrived for that long); returns how many records were handled."""
    from kafka import KafkaConsumer
    from kafka.structs import OffsetAndMetadata

    from rental.connections import kafka_options

    topic = topic or settings.topic_retrain_requests
    consumer = KafkaConsumer(topic, **kafka_options(settings), group_id=settings.flow_requests_group_id,
                             client_id="rental-flows-requests", enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=1,
                             # a run holds the record for as long as it trains
                             max_poll_interval_ms=24 * 3600 * 1000)  # fmt: skip
    handled, quiet_since = 0, datetime.now(UTC)
    try:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=500, max_records=1)
            if not polled:
                if not consumer.assignment():  # still joining the group: not idle yet
                    quiet_since = datetime.now(UTC)
                elif idle_s is not None and (datetime.now(UTC) - quiet_since).total_seconds() >= idle_s:
                    break
                continue
            for tp, records in polled.items():
                for record in records:
                    committed = threading.Event()

                    def commit(tp=tp, record=record, committed=committed) -> None:
                        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                        committed.set()

                    where = f"{tp.topic}[{tp.partition}]@{record.offset}"
                    outcome = handle_request(settings, record.value, where, on_started=commit)
                    if not committed.is_set():
                        commit()
                    handled += 1
                    on_outcome(outcome)
            quiet_since = datetime.now(UTC)
    finally:
        consumer.close(autocommit=False)
    return handled
