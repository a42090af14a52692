"""`make bench-loop`: the loop on the demo's defaults, timed (one JSON line).

- ``detect_s``: from the shift's start in the live stream to the retrain request, as
  `rental demo drift` measures it (event-time windows of 30 s, two failing windows, the check
  every 3 s);
- ``retrain_s``: from the request to the `retrain` flow's end, the new version registered and
  gated (goal: under 5 minutes on the demo's data);
- ``swap_s``: from the promotion to the first quote the running service answers with the new
  version, no restart (goal: under 30 s; the service polls the alias every
  ``serve_alias_poll_s``).

Runs `rental demo drift` in the data dir as `make demo` leaves it, and `make demo`'s first steps
first when no simulated history is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rental.settings import get_settings

PREPARE = (("simulate", "history"), ("catalogue", "publish"), ("features", "backfill"), ("features", "apply"),
           ("features", "materialize", "--full"), ("train",))  # fmt: skip


def rental(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "rental.cli", *args], check=True)


def main() -> None:
    settings = get_settings()
    if not (settings.simulation_dir / "simulation.json").exists():
        for step in PREPARE:
            rental(*step)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loop.json"
        done = subprocess.run([sys.executable, "-m", "rental.cli", "demo", "drift", "--summary-json", str(out)],
                              stdout=subprocess.DEVNULL, stderr=sys.stderr, env=os.environ)  # fmt: skip
        loop = json.loads(out.read_text()) if out.exists() else {}
    timings = loop.get("timings", {})
    print(json.dumps({
        "detect_s": _round(timings.get("detect_s")), "retrain_s": _round(timings.get("retrain_s")),
        "swap_s": _round(timings.get("swap_s")), "promoted": loop.get("promoted"), "version": loop.get("version"),
        "served_before": loop.get("served_before"), "served_after": loop.get("served_after"),
        "gate_reasons": loop.get("gate_reasons"), "exit_code": done.returncode,
    }))  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    main()
