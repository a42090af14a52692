"""`rental demo`: the running system shown to a person, features moving and quotes following."""

import typer

from rental.demo.drift import drift
from rental.demo.live import live
from rental.demo.quotes import quotes

app = typer.Typer(help="Demonstrations of the running system.", no_args_is_help=True)
app.command()(live)
app.command()(quotes)
app.command()(drift)
