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
    commit_failures: int = 0  # a commit the group refused (a rebalance): the next checkpoint's counts
    lease_waits: int = 0  # polls whose writes waited for a heartbeat to confirm the membership
    partitions_lost: int = 0  # partitions dropped unsaved after an expulsion
