"""Many byte strings as one buffer and their end offsets: how the compiled passes take them."""

from __future__ import annotations

import numpy as np


def concatenated(items: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as (one uint8 buffer, each one's end offset as int64)."""
    ends = np.cumsum(np.fromiter(map(len, items), np.int64, len(items)))
    return np.frombuffer(b"".join(items), np.uint8), ends
