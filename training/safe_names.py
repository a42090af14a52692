"""A catalogue's text as a name MLflow (or a file system) accepts: safe, unique and stable.

Categories and brands are the platform's own words: commas, accents, emoji, slashes, names of
hundreds of characters. MLflow metric names allow letters, digits, ``_ - . / :`` and spaces
only, and a path must not gain a folder from a slash. The readable part keeps what is already
safe; a short hash of the whole text follows whenever anything was changed or cut, so two
different texts never share a name and a text always gets the same one.
"""

from __future__ import annotations

import hashlib
import re

MAX_READABLE = 48
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def metric_safe(text: str) -> str:
    readable = _UNSAFE.sub("_", text).strip("_.") or "_"
    if readable == text and len(text) <= MAX_READABLE:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{readable[:MAX_READABLE]}-{digest}"
