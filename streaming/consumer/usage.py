"""What a consumer process used, as it measures itself (CPU seconds and peak memory), and
how it gives freed memory back to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
from pathlib import Path

import pyarrow as pa

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_TRIM = getattr(_LIBC, "malloc_trim", None)  # glibc only


def give_back_memory() -> None:
    """Return freed heap to the system: Arrow's pool and glibc's malloc both keep what they
    freed for reuse, and a stage forked from a process holding ~100 MB of such pages (what
    reading and validating a 100,000-item catalogue leaves) carries them in every process.
    Cheap (a few ms): run after loading, and after each checkpoint hands its rows to the child.
    It frees nothing itself: what is unreachable must be released first (a stage's cyclic
    garbage is the runner's to collect, on its own schedule)."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)


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
