"""Memory of a process tree, sampled from /proc while it runs: each process's peak resident set
(RSS) and proportional set (PSS), and the tree's peak total PSS.

RSS counts every page a process maps, shared or not. The consumer's stages are forked from a
supervisor that loaded Feast and the catalogue, and each checkpoint writer is forked from its
stage, so their RSS counts those shared pages again in every process. PSS charges each shared
page to its sharers in equal parts: a process's fair share, and summed over the tree, what the
consumer takes from the machine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _rollup(pid: int) -> tuple[float, float] | None:
    """(RSS, PSS) in MB, or None once the process has gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0]) / 1024
    return (values["Rss"], values["Pss"]) if len(values) == 2 else None


@dataclass
class TreeMemory:
    """Sampled every ``interval_s`` from ``start`` until ``stop``."""

    root: int
    interval_s: float = 0.2
    peak_rss: dict[int, float] = field(default_factory=dict)
    peak_pss: dict[int, float] = field(default_factory=dict)
    parent: dict[int, int] = field(default_factory=dict)
    peak_total_pss: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            total, todo = 0.0, [(self.root, None)]
            while todo:
                pid, parent = todo.pop()
                sample = _rollup(pid)
                if sample is None:
                    continue
                rss, pss = sample
                total += pss
                self.peak_rss[pid] = max(rss, self.peak_rss.get(pid, 0.0))
                self.peak_pss[pid] = max(pss, self.peak_pss.get(pid, 0.0))
                if parent is not None:
                    self.parent[pid] = parent
                todo.extend((child, pid) for child in _children(pid))
            self.peak_total_pss = max(self.peak_total_pss, total)
            self._stop.wait(self.interval_s)

    def by_name(self, names: dict[int, str], root_name: str) -> dict[str, dict[str, float]]:
        """Peaks per named process; a named process's children (its checkpoint writers) as
        "<name> writers", their largest."""
        names = {self.root: root_name, **names}
        out: dict[str, dict[str, float]] = {}
        for pid in self.peak_rss:
            name = names.get(pid) or f"{names.get(self.parent.get(pid), '?')} writers"
            entry = out.setdefault(name, {"rss": 0.0, "pss": 0.0})
            entry["rss"] = max(entry["rss"], self.peak_rss[pid])
            entry["pss"] = max(entry["pss"], self.peak_pss[pid])
        return out
