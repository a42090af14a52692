"""The retrain requests' ledger and the rules of what a request starts (pure logic, no services).

A request starts one `retrain` run unless its idempotency key was handled before (whatever
came of it), it asks for another registered model, or a requested run started less than the
cool-down ago. The ledger is a small SQLite file, saved in one transaction: it remembers every handled key
with what came of it, so a restarted listener never runs a handled key again.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

KEYS_KEPT = 10_000  # handled keys remembered (the oldest are forgotten first)
REJECTED_KEPT = 100
Action = Literal["start", "duplicate", "cooldown", "other_model"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS handled (seq INTEGER NOT NULL, key TEXT PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
"""
COLUMNS = {"handled": 3, "rejected": 2}


class BadRequest(ValueError):
    """A record that is not a retrain request; its text is the reason it was skipped."""


class RetrainRequest(BaseModel):
    """What the listener needs of monitoring's request (monitoring/README.md); the rest is kept."""

    model_config = ConfigDict(extra="allow")
    schema_version: Literal[1]
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    model_name: str = Field(min_length=1)
    champion_version: str | None = None
    reasons: list[str] = Field(default_factory=list)


def parse(value: bytes | None) -> RetrainRequest:
    if not value:
        raise BadRequest("empty record")
    try:
        payload = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"not a JSON object but {type(payload).__name__}")
    try:
        return RetrainRequest.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"not a retrain request: {problems}") from None


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


@dataclass
class Ledger:
    handled: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> what came of it (oldest first)
    last_started_at: str | None = None  # when the latest requested run started (ISO, UTC)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # the latest bad records and why

    @classmethod
    def load(cls, path: Path) -> Ledger:
        if not path.exists():
            return cls()
        try:
            with closing(sqlite3.connect(path)) as db:
                handled = {
                    key: json.loads(entry) for key, entry in db.execute("SELECT key, entry FROM handled ORDER BY seq")
                }
                meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
                rejected = [json.loads(entry) for (entry,) in db.execute("SELECT entry FROM rejected ORDER BY seq")]
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path} is not this version's ledger of retrain requests ({exc}); "
                             "move it away to start a new one (handled keys would then run again)") from None  # fmt: skip
        return cls(handled, meta.get("last_started_at"), rejected)

    def save(self, path: Path) -> None:
        """All of it in one SQLite transaction: a crash leaves the ledger as it was or as it is now."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path)) as db:
            db.executescript(SCHEMA)
            with db:
                for table, rows in (("handled", [(i, key, json.dumps(entry, default=str))
                                                 for i, (key, entry) in enumerate(self.handled.items())]),
                                    ("rejected", [(i, json.dumps(entry, default=str))
                                                  for i, entry in enumerate(self.rejected)])):  # fmt: skip
                    db.execute(f"DELETE FROM {table}")
                    db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * COLUMNS[table])})", rows)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_started_at', ?)", (self.last_started_at,))

    def remember(self, key: str, entry: dict[str, Any]) -> None:
        self.handled.pop(key, None)
        self.handled[key] = entry
        for old in list(self.handled)[: max(0, len(self.handled) - KEYS_KEPT)]:
            del self.handled[old]

    def reject(self, entry: dict[str, Any]) -> None:
        self.rejected = [*self.rejected, entry][-REJECTED_KEPT:]


def decide(ledger: Ledger, request: RetrainRequest, now: datetime, cooldown_s: float, model_name: str) -> Decision:
    key = request.idempotency_key
    if request.model_name != model_name:
        return Decision("other_model", f"request {key} is for model {request.model_name!r}; "
                                       f"this listener retrains {model_name!r}")  # fmt: skip
    if key in ledger.handled:
        seen = ledger.handled[key]
        return Decision("duplicate", f"request {key} was already handled ({seen.get('status')} at {seen.get('at')})")
    if ledger.last_started_at is not None:
        since = now - datetime.fromisoformat(ledger.last_started_at)
        if since < timedelta(seconds=cooldown_s):
            left = timedelta(seconds=cooldown_s) - since
            return Decision("cooldown", f"request {key} arrived {since.total_seconds():.0f} s after a requested "
                                        f"retrain started ({ledger.last_started_at}); the cool-down is "
                                        f"{cooldown_s:.0f} s ({left.total_seconds():.0f} s left)")  # fmt: skip
    return Decision("start", f"request {key} ({', '.join(request.reasons) or 'no reason given'}) starts a retrain")
