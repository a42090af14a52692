"""What a stage counts as it runs: shown in its live table and written to ``--stats-json``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counters:
    events: int = 0
    duplicates: int = 0
    rows_online: int = 0
    checkpoints: int = 0
    commit_retries: int = 0
