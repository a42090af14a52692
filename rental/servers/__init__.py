"""Local servers the project runs on: a real Kafka broker (KRaft) and Redis.

``up`` starts what is missing (or only checks the servers named by ``KAFKA_BOOTSTRAP_SERVERS``
and ``REDIS_URL``), ``down`` stops only what this project started. Both share one lifecycle
(``lifecycle.LocalServer``); ``kafka.py`` and ``redis.py`` hold only what is their own. The CLI is
``rental services install|up|down|status`` (``rental/servers/cli.py``); tests use the same functions.
"""

from __future__ import annotations

from rental.servers.lifecycle import LocalServer, ServiceError, ServiceStatus
from rental.settings import Settings, get_settings

__all__ = ["SERVICES", "LocalServer", "ServiceError", "ServiceStatus", "down", "server", "statuses", "up"]

SERVICES = ("kafka", "redis")


def server(name: str, settings: Settings | None = None) -> LocalServer:
    """The local server called ``name``, on ``settings`` (the environment's by default)."""
    # Imported here: the Kafka and Redis client libraries load only for the server asked for.
    if name == "kafka":
        from rental.servers.kafka import KafkaServer

        return KafkaServer(settings or get_settings())
    if name == "redis":
        from rental.servers.redis import RedisServer

        return RedisServer(settings or get_settings())
    raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")


def up(names: tuple[str, ...] | list[str] = SERVICES, say=print) -> dict[str, bool]:
    """Start (or check) each service; name -> True if this call started it."""
    return {name: server(name).start(say=say) for name in names}


def down(names: tuple[str, ...] | list[str] = SERVICES, say=print) -> dict[str, bool]:
    """Stop each service this project started; name -> True if it was stopped now."""
    return {name: server(name).stop(say=say) for name in names}


def statuses(names: tuple[str, ...] | list[str] = SERVICES) -> list[ServiceStatus]:
    return [server(name).status() for name in names]
