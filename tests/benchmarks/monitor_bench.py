"""`make bench-monitor`: the checks' cost and how fast they catch each shift (one JSON line).

- ``drift_check_s``, ``drift_check_peak_rss_mb``: one window of 10,000 quotes (all of them
  booked, so every report runs on all 10,000) checked and saved (drift, per-category and quality
  reports, HTML and JSON), in a fresh process so its peak RSS is the check's own (imports
  included);
- ``detection_windows_inflation``, ``_trend``, ``_off_season``: weekly windows from a shift's
  start to the window that raised its retrain request (the start's window is 1), checked from
  two windows before the start; null if none was raised;
- ``false_alarms``: retrain requests over the 20 unshifted weeks after training.

Quotes come from the registered champion's own predictor on the simulated platform's features
(``tests/worlds/monitor_world.py``), not from a served Bento, so the figures are the checks'.
Requests go to a topic of the bench's own on the local broker; logging through the prediction
log's consumer is measured by its own benchmark, not here.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import pandas as pd

from rental.servers.topics import admin_client, ensure_topics
from rental.settings import get_settings
from tests.worlds import monitor_world as mw

QUOTES = 10_000


def one_window(folder: Path) -> None:
    """In a child process: check the window saved in ``folder``; print time and peak RSS."""
    import pickle

    warnings.filterwarnings("ignore")
    from monitoring.checks.report import check_window
    from monitoring.reference import load_reference
    from monitoring.views.store import save_window

    settings, window, version = pickle.loads((folder / "args.pkl").read_bytes())
    quotes, outcomes = pd.read_parquet(folder / "quotes.parquet"), pd.read_parquet(folder / "outcomes.parquet")
    reference = load_reference(settings, version)
    started = time.perf_counter()
    result = check_window(window, version, quotes, outcomes, reference, settings)
    save_window(settings, result)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "status": result.status}))


def _drift_check(world: mw.MonitorWorld, folder: Path) -> dict:
    import pickle

    from monitoring.checks.windows import Window

    quotes = world.quotes["none"].sample(QUOTES, random_state=0).sort_values("quoted_at")
    outcomes = world.outcomes["none"].set_index("request_id").loc[quotes["request_id"]].reset_index()
    window = Window(quotes["quoted_at"].min().to_pydatetime(), quotes["quoted_at"].max().to_pydatetime())
    settings = world.scenario_settings("bench", folder / "monitor")
    folder.mkdir(parents=True, exist_ok=True)
    quotes.to_parquet(folder / "quotes.parquet")
    outcomes.to_parquet(folder / "outcomes.parquet")
    (folder / "args.pkl").write_bytes(pickle.dumps((settings, window, world.version)))
    out = subprocess.run([sys.executable, "-m", "tests.benchmarks.monitor_bench", "--one-window", str(folder)],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _scenario(world: mw.MonitorWorld, name: str, folder: Path, topic: str, first) -> list[dict]:
    from monitoring.checks.run import run_checks

    settings = world.scenario_settings(name, folder / name, topic_retrain_requests=topic)
    quotes, outcomes = world.quotes[name], world.outcomes[name]
    mw.write_log(settings, quotes[quotes["quoted_at"] >= pd.Timestamp(first)],
                 outcomes[outcomes["quoted_at"] >= pd.Timestamp(first)])  # fmt: skip
    return run_checks(settings, dlq=False).requests


def _detection(requests: list[dict]) -> int | None:
    if not requests:
        return None
    from datetime import datetime

    end = datetime.fromisoformat(requests[0]["windows"][-1]["window_end"])
    return round((end - mw.SHIFT_START) / mw.WINDOW)


def main() -> None:
    warnings.filterwarnings("ignore")
    base = get_settings()
    topic = f"bench.{uuid.uuid4().hex[:8]}.retrain-requests"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        world = mw.build(folder / "world", base)
        world_s = time.perf_counter() - started
        with admin_client(base) as admin:
            ensure_topics(admin, {topic: (1, 3600 * 1000)})
        try:
            check = _drift_check(world, folder / "one-window")
            started = time.perf_counter()
            false_alarms = len(_scenario(world, "none", folder, topic, mw.T0))
            unshifted_s = time.perf_counter() - started
            detection = {
                name: _detection(_scenario(world, name, folder, topic, mw.SHIFT_START - 2 * mw.WINDOW))
                for name in ("inflation", "trend", "off_season")
            }
        finally:
            with admin_client(base) as admin:
                admin.delete_topics([topic], raise_errors=False)
    print(json.dumps({
        "drift_check_s": round(check["seconds"], 2), "drift_check_peak_rss_mb": round(check["peak_rss_mb"], 1),
        "drift_check_quotes": QUOTES,
        "detection_windows_inflation": detection["inflation"], "detection_windows_trend": detection["trend"],
        "detection_windows_off_season": detection["off_season"],
        "false_alarms": false_alarms, "unshifted_windows": mw.UNSHIFTED_WINDOWS,
        "window_days": mw.WINDOW.days, "unshifted_check_s_per_window": round(unshifted_s / mw.UNSHIFTED_WINDOWS, 2),
        "world_build_s": round(world_s, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--one-window":
        one_window(Path(sys.argv[2]))
    else:
        main()
