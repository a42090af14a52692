"""``rental services up|down|status|install``: the local Kafka broker and Redis.

Mounted by ``rental/cli.py`` as ``rental services``; also runnable as
``python -m rental.servers.cli``. Errors print as one clear message and exit 1.
"""

from __future__ import annotations

from enum import StrEnum

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rental.connections import ConnectionSettingsError, mask_text, secrets_of
from rental.servers import SERVICES, ServiceError, statuses
from rental.servers import down as stop_services
from rental.servers import up as start_services
from rental.settings import get_settings

app = typer.Typer(help="Run the local Kafka broker and Redis (or check external ones).", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


class Service(StrEnum):
    kafka = "kafka"
    redis = "redis"


def _names(only: list[Service] | None) -> list[str]:
    return [s.value for s in only] if only else list(SERVICES)


def _masked(text: str) -> str:
    """What the commands print: any credential of the settings, or in a URL, shown as ***."""
    return mask_text(text, secrets_of(get_settings()))


def _say(line: str) -> None:
    console.print(_masked(line))


def _fail(exc: Exception) -> None:
    errors.print(f"[bold red]error:[/] {escape(_masked(str(exc)))}", markup=True)
    raise typer.Exit(1)


ONLY = typer.Argument(None, help="Services to act on (default: all).", show_default=False)


@app.command()
def up(only: list[Service] | None = ONLY) -> None:
    """Start the services that are not running, and make sure the topics exist."""
    try:
        start_services(_names(only), say=_say)
    except (ServiceError, ConnectionSettingsError) as exc:
        _fail(exc)


@app.command()
def down(only: list[Service] | None = ONLY) -> None:
    """Stop the services this project started; external ones are left alone."""
    try:
        stop_services(_names(only), say=_say)
    except (ServiceError, ConnectionSettingsError) as exc:
        _fail(exc)


@app.command()
def status(only: list[Service] | None = ONLY) -> None:
    """Show each service: address, pid, state and who started it."""
    table = Table(title="local services")
    for column in ("service", "address", "pid", "state", "started by"):
        table.add_column(column)
    colours = {"running": "green", "reachable": "green", "stopped": "yellow", "unreachable": "red"}
    try:
        found = statuses(_names(only))
    except ConnectionSettingsError as exc:
        _fail(exc)
    for st in found:
        colour = colours.get(st.state, "white")
        table.add_row(st.name, escape(_masked(st.address)), str(st.pid or "-"), f"[{colour}]{st.state}[/]", st.origin)
    console.print(table)


@app.command()
def install() -> None:
    """One-time install: fetch the pinned Kafka jars (mvn) and Debian's redis-server (apt)."""
    from rental.servers import kafka, redis

    s = get_settings()
    try:
        if not s.kafka_is_external:
            already = kafka.jars_fetched(s)
            lib = kafka.fetch_jars(s, say=_say)
            console.print(f"kafka: jars {'already ' if already else ''}in {lib}")
        if not s.redis_is_external:
            installed = redis.install(s, say=_say)
            console.print(f"redis: {'installed' if installed else 'found'} {redis.binary(s)}")
    except ServiceError as exc:
        _fail(exc)


if __name__ == "__main__":
    app()
