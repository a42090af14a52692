"""The benchmark's /proc sampler: a child that holds 100 MB is seen with it, its PSS within its RSS."""

from __future__ import annotations

import subprocess
import sys

from tests.benchmarks.process_memory import TreeMemory


def test_a_childs_memory_is_seen_and_named():
    hold = "import os, sys, time; b = bytearray(100 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {hold!r}])"]
    )
    memory = TreeMemory(parent.pid, interval_s=0.05).start()
    parent.wait(timeout=30)
    memory.stop()
    named = memory.by_name({}, "root")
    assert set(named) == {"root", "root writers"}  # the grandchild named after its parent
    child = named["root writers"]
    assert child["rss"] >= 100 and child["pss"] <= child["rss"]
    assert memory.peak_total_pss >= 100
    assert named["root"]["rss"] < 100  # the parent held none of it
