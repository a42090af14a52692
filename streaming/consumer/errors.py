"""Errors a stage stops with on purpose, each saying what to do (no traceback needed)."""


class StartRefused(RuntimeError):
    """A partition cannot start with windows holding every event: the message says what to do."""
