"""The `compact` flow: merge the offline store's closed days (`rental features compact`)."""

from __future__ import annotations

from prefect import flow

from flows.tasks import compact_offline
from rental.settings import Settings, get_settings


@flow(name="compact", validate_parameters=False)
def compact(settings: Settings | None = None) -> dict[str, list[int]]:
    return compact_offline(settings or get_settings())
