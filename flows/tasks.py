"""Prefect tasks around the project's own entry points: one job each, retried where a service
answers (Redis, Kafka, MLflow), never where a retry could do the work twice.

Tasks pass settings and frames in-process: results are not persisted and nothing is cached,
so a retry or a new run always does the work again on the data as it is then.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from rental.settings import Settings

# The stages of `training.train.run_training` that talk to a service: the gate reads the
# champion and tags the version, the promotion moves the alias; both may safely run again.
# Registering is not retried: a second try would log a second version.
RETRIED_STAGES = frozenset({"gate", "promote"})


def retry_options(settings: Settings) -> dict:
    return {"retries": settings.flow_retries, "retry_delay_seconds": settings.flow_retry_delay_s}


def stage_task(settings: Settings) -> Callable[[str, Callable], Task]:
    """`run_training`'s ``stage`` hook: each stage becomes a task run of its own in the flow."""

    def wrap(name: str, function: Callable) -> Task:
        options = retry_options(settings) if name in RETRIED_STAGES else {}
        return task(function, name=name, cache_policy=NO_CACHE, persist_result=False, **options)

    return wrap


def _archive(settings: Settings) -> dict:
    """`rental history archive`: the bookings topic's new bookings into the history training reads."""
    from streaming.history.archive import archive

    return archive(settings).as_dict()


def archive_task(settings: Settings) -> Task:
    """Retried (Kafka): a retry re-reads what was not committed, and booking ids skip what was written."""
    return task(_archive, name="archive", cache_policy=NO_CACHE, persist_result=False, **retry_options(settings))


@task(name="compact", cache_policy=NO_CACHE, persist_result=False)
def compact_offline(settings: Settings, before: datetime | None = None) -> dict[str, list[int]]:
    """Merge the closed days' small streamed files (`rental features compact`); view -> [merged, written]."""
    from streaming.feature_store.offline import compact

    day = (before or datetime.now(UTC)).date()
    return {view: list(counts) for view, counts in compact(settings, before=day).items()}


def _materialize(settings: Settings, end: datetime | None, full: bool) -> dict[str, str]:
    """What `rental features materialize` does: everything after a backfill, else incrementally."""
    from streaming.events import EPOCH
    from streaming.feature_store.store import feature_store

    store = feature_store(settings)
    end = end or datetime.now(UTC)
    views = store.list_feature_views()
    if full or all(not view.materialization_intervals for view in views):
        store.materialize(start_date=EPOCH, end_date=end)
        kind = "full"
    else:
        store.materialize_incremental(end_date=end)
        kind = "incremental"
    return {"kind": kind, "end": end.isoformat()}


def materialize_task(settings: Settings) -> Task:
    return task(_materialize, name="materialize", cache_policy=NO_CACHE, persist_result=False,
                **retry_options(settings))  # fmt: skip


def _monitor_checks(settings: Settings, dlq: bool) -> dict:
    """`rental monitor check` once: the closed windows not yet checked, requests, the metrics file."""
    from monitoring.checks.run import run_checks
    from monitoring.cli import _write_metrics

    done = run_checks(settings, dlq=dlq)
    _write_metrics(settings)
    if done.problems:  # undelivered requests stay in the policy's outbox: a retry sends them
        raise RuntimeError("; ".join(done.problems))
    return {
        "windows": [{"window": r.window.label(), "model_version": r.model_version, "status": r.status,
                     "failed": [c.name for c in r.failed]} for r in done.results],
        "requests": [r["idempotency_key"] for r in done.requests],
    }  # fmt: skip


def monitor_task(settings: Settings) -> Task:
    return task(_monitor_checks, name="monitor checks", cache_policy=NO_CACHE, persist_result=False,
                **retry_options(settings))  # fmt: skip
