"""Each checked window's files, under ``<monitor_dir>/reports/<model version>/<window start>/``:
``drift.html`` and ``quality.html`` (Evidently's self-contained reports), their snapshots as
``drift.json`` and ``quality.json``, and ``window.json``: the window's figures, checks and status.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.table import Table

from monitoring.checks.report import WindowResult
from rental.settings import Settings


def reports_dir(settings: Settings) -> Path:
    return settings.monitor_dir / "reports"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_window(settings: Settings, result: WindowResult) -> Path:
    folder = reports_dir(settings) / (result.model_version or "unknown") / result.window.key
    folder.mkdir(parents=True, exist_ok=True)
    for name, snapshot in result.snapshots.items():
        snapshot.save_html(str(folder / f"{name}.html"))  # a string path: a file object writes nothing
        _write(folder / f"{name}.json", json.dumps(snapshot.dict(), default=str))
    summary = result.summary() | {"html": [str(folder / f"{n}.html") for n in result.snapshots]}
    _write(folder / "window.json", json.dumps(summary, indent=1, default=str))  # last: the window is done
    return folder


def latest_windows(settings: Settings, count: int = 10) -> list[dict[str, Any]]:
    """The newest windows' summaries (any model version), newest last."""
    files = sorted(reports_dir(settings).glob("*/*/window.json"), key=lambda p: p.parent.name)
    return [json.loads(p.read_text()) for p in files[-count:]]


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def status_table(windows: list[dict[str, Any]]) -> Table:
    table = Table(title="monitoring: latest windows (event time, UTC)")
    for column in ("window start", "model", "status", "quotes", "booked", "drift share", "pred. drift",
                   "bias (ref)", "MAPE (ref)", "booking rate", "failed"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("window start", "status", "failed") else "right")
    colours = {"ok": "green", "failing": "red", "learning": "cyan", "too few rows": "yellow"}
    for w in windows:
        f = w["figures"]
        table.add_row(
            w["window_start"][:16].replace("T", " "), w["model_version"],
            f"[{colours.get(w['status'], 'white')}]{w['status']}[/]", f"{w['quotes']:,}", f"{w['booked']:,}",
            _fmt(f.get("drift_share"), ".2f"), _fmt(f.get("prediction_drift"), ".3f"),
            f"{_fmt(f.get('bias'))} ({_fmt(f.get('reference_bias'))})",
            f"{_fmt(f.get('mape'))} ({_fmt(f.get('reference_mape'))})", _fmt(f.get("booking_rate"), ".3f"),
            ", ".join(w["failed"]) or "-",
        )  # fmt: skip
    return table
