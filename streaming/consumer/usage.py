"""What a consumer process used, as it measures itself: CPU seconds and peak memory."""

from __future__ import annotations

import resource
from pathlib import Path


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU of this process (or, with RUSAGE_CHILDREN, of its waited-for children)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    """This process's own peak resident memory. ru_maxrss survives exec, so a process started
    from a large parent would report the parent's size; Linux's VmHWM belongs to the new image."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
