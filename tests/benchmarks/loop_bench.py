"""`make bench-loop`: the loop on the demo's defaults, timed (one JSON line).

- ``detect_s``: from the shift's start in the live stream to the retrain request, as
  `rental demo drift` measures it (event-time windows of 30 s, two failing windows, the check
  every 3 s);
- ``retrain_s``: from the request to the `retrain` flow's end, the new version registered and
  gated (goal: under 5 minutes on the demo's data);
- ``swap_s``: from the promotion to the first quote the running service answers with the new
  version, no restart (goal: under 30 s; the service polls the alias every
  ``serve_alias_poll_s``).

Runs `rental demo drift` in a world of its own prepared by `make demo`'s first steps
(``tests/worlds/loop_world.py``: a temporary data dir, Redis server, topics and groups; the
demo's history of 2,000 items and 60,000 bookings; a quick first champion), so the figures do
not depend on what an earlier run left in data/.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rental.settings import get_settings
from tests.worlds.loop_world import loop_world, rental


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp, loop_world(get_settings(), Path(tmp)) as env:
        out = Path(tmp) / "loop.json"
        try:
            rental(env, "demo", "drift", "--summary-json", str(out), timeout=1800)
            failed = None
        except AssertionError as exc:  # the loop's own verdict: reported, with what it measured
            failed = str(exc)[-2000:]
        loop = json.loads(out.read_text()) if out.exists() else {}
    timings = loop.get("timings", {})
    print(json.dumps({
        "detect_s": _round(timings.get("detect_s")), "retrain_s": _round(timings.get("retrain_s")),
        "swap_s": _round(timings.get("swap_s")), "promoted": loop.get("promoted"), "version": loop.get("version"),
        "served_before": loop.get("served_before"), "served_after": loop.get("served_after"),
        "gate_reasons": loop.get("gate_reasons"), "failed": failed,
    }))  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


if __name__ == "__main__":
    main()
