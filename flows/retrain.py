"""The `retrain` flow: the live bookings into the history, compact the offline store's closed
days, then one `rental train` run
(point-in-time set, train, evaluate, register, gate, and the promotion only through the gate),
each step a task run of its own."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.environment import flows_dir
from flows.lock import exclusive
from flows.tasks import archive_task, compact_offline, stage_task
from rental.settings import Settings, get_settings


@flow(name="retrain", validate_parameters=False)
def retrain(settings: Settings | None = None, reason: str = "schedule", request_key: str | None = None) -> dict:
    """``reason`` and ``request_key`` say why it runs (a schedule, a person, a retrain request)."""
    from training.train import run_training

    settings = settings or get_settings()
    logger = get_run_logger()
    with exclusive(flows_dir(settings) / "retrain.lock"):
        logger.info("retrain (%s%s)", reason, f", request {request_key}" if request_key else "")
        archived = archive_task(settings)(settings)
        compacted = compact_offline(settings)
        result = run_training(settings, stage=stage_task(settings))
    outcome = {
        "reason": reason, "request_key": request_key, "archived": archived, "compacted": compacted,
        "run_id": result.run_id,
        "version": result.version, "promoted": result.decision.promote, "gate_reasons": result.decision.reasons,
        "mae": result.metrics.get("mae"), "best_baseline_mae": result.metrics.get("best_baseline_mae"),
    }  # fmt: skip
    logger.info("version %s %s: %s", result.version, "promoted to champion" if result.decision.promote
                else "not promoted", "; ".join(result.decision.reasons))  # fmt: skip
    return outcome
