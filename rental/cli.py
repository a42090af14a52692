"""The `rental` command: one entry point for every part of the system."""

from __future__ import annotations

import typer

from flows.cli import app as flows_app
from monitoring.cli import app as monitor_app
from rental.demo import app as demo_app
from rental.servers.cli import app as services_app
from rental.servers.pricing import serve
from streaming.catalogue.cli import app as catalogue_app
from streaming.catalogue.cli import dlq_app
from streaming.consumer.cli import app as stream_app
from streaming.contracts import app as contracts_app
from streaming.feature_store.cli import app as features_app
from streaming.history.cli import app as history_app
from streaming.simulator.cli import app as simulate_app
from training.cli import train

app = typer.Typer(help="Real-time rental pricing for fashion rental platforms.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(simulate_app, name="simulate")
app.add_typer(history_app, name="history")
app.add_typer(features_app, name="features")
app.add_typer(stream_app, name="stream")
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(dlq_app, name="dlq")
app.add_typer(demo_app, name="demo")
app.add_typer(monitor_app, name="monitor")
app.add_typer(contracts_app, name="contracts")
app.add_typer(flows_app, name="flows")
app.command("train")(train)
app.command("serve")(serve)

if __name__ == "__main__":
    app()
