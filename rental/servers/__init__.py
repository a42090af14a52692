"""Local services the project runs on: a real Kafka broker (KRaft) and Redis.

``up`` starts what is missing (or only checks the servers named by ``KAFKA_BOOTSTRAP_SERVERS``
and ``REDIS_URL``), ``down`` stops only what this project started. The CLI is
``rental services up|down|status`` (``rental/servers/cli.py``); tests use the same functions.
"""

from __future__ import annotations

from rental.servers.lifecycle import ServiceError, ServiceStatus

__all__ = ["SERVICES", "ServiceError", "ServiceStatus", "down", "statuses", "up"]

SERVICES = ("kafka", "redis")


def _module(name: str):
    from rental.servers import kafka, redis

    return {"kafka": kafka, "redis": redis}[name]


def up(names: tuple[str, ...] | list[str] = SERVICES, say=print) -> dict[str, bool]:
    """Start (or check) each service; name -> True if this call started it."""
    return {name: _module(name).start(say=say) for name in names}


def down(names: tuple[str, ...] | list[str] = SERVICES, say=print) -> dict[str, bool]:
    """Stop each service this project started; name -> True if it was stopped now."""
    return {name: _module(name).stop(say=say) for name in names}


def statuses(names: tuple[str, ...] | list[str] = SERVICES) -> list[ServiceStatus]:
    return [_module(name).status() for name in names]
