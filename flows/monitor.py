"""The `monitor` flow: the prediction log's closed windows not yet checked, with their reports,
retrain requests and metrics file (`rental monitor check` once). The log itself is the long
running `rental monitor run` consumer, not a flow."""

from __future__ import annotations

from prefect import flow

from flows.tasks import monitor_task
from rental.settings import Settings, get_settings


@flow(name="monitor", validate_parameters=False)
def monitor(settings: Settings | None = None, dlq: bool = True) -> dict:
    settings = settings or get_settings()
    return monitor_task(settings)(settings, dlq)
