"""The `materialize` flow: the batch views' latest offline values into Redis, incrementally
after the first run (`rental features materialize`)."""

from __future__ import annotations

from prefect import flow

from flows.tasks import materialize_task
from rental.settings import Settings, get_settings


@flow(name="materialize", validate_parameters=False)
def materialize(settings: Settings | None = None, full: bool = False) -> dict[str, str]:
    settings = settings or get_settings()
    return materialize_task(settings)(settings, None, full)
