"""`rental flows serve`: the four flows on their cron schedules (``flow_*_cron``, UTC) and the
retrain requests' listener, in one process, with no work pool: Prefect's runner starts each
scheduled run as a process of its own and reports it to the server.
"""

from __future__ import annotations

import logging
import threading
import time

from kafka.errors import KafkaError

from rental.settings import Settings

log = logging.getLogger(__name__)


def deployments(settings: Settings) -> list:
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.compact import compact
    from flows.materialize import materialize
    from flows.monitor import monitor
    from flows.retrain import retrain

    schedule = [(retrain, settings.flow_retrain_cron), (materialize, settings.flow_materialize_cron),
                (compact, settings.flow_compact_cron), (monitor, settings.flow_monitor_cron)]  # fmt: skip
    # A module path, not a file path: a scheduled run imports the installed package from any directory.
    return [flow.to_deployment(name=f"{flow.name}-scheduled", schedule=Cron(cron, timezone="UTC"), tags=["rental"],
                               entrypoint_type=EntrypointType.MODULE_PATH) for flow, cron in schedule]  # fmt: skip


def keep_listening(settings: Settings, stop: threading.Event) -> None:
    """The requests' listener, started again after Kafka errors (it resumes at its committed offset)."""
    from flows.requests import listen

    while not stop.is_set():
        try:
            listen(settings, stop, on_outcome=lambda o: log.info("retrain request: %s: %s", o.status, o.reason))
        except KafkaError as exc:
            log.warning("retrain requests' listener: %r; again in %.0f s", exc, settings.flow_retry_delay_s)
            stop.wait(settings.flow_retry_delay_s)


def serve(settings: Settings, listen_requests: bool = True) -> None:
    from prefect import serve as prefect_serve

    stop = threading.Event()
    listener = None
    if listen_requests:
        listener = threading.Thread(target=keep_listening, args=(settings, stop), name="retrain-requests", daemon=True)
        listener.start()
    try:
        prefect_serve(*deployments(settings))
    finally:
        stop.set()
        if listener is not None:
            started = time.monotonic()
            listener.join(timeout=10)
            if listener.is_alive():
                log.warning("the requests' listener is still in a run after %.0f s: leaving it to the process's exit",
                            time.monotonic() - started)  # fmt: skip
