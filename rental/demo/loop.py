"""The loop closed after `rental demo drift`: the retrain request runs the `retrain` flow, and
the pricing service, still running, is asked until it answers with the new champion.

The request is handled as the flows' listener handles a record (`flows.requests.handle_request`
with the bytes read back from `retrain-requests`): the ledger makes it idempotent, Prefect runs
the flow and shows its tasks. The service is never restarted: it follows the `champion` alias
every `serve_alias_poll_s`.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

console = Console()


def close_loop(settings, bento, published: dict, quote: dict, timings: dict[str, float]) -> dict:
    """Run the retrain the request asks for; if the gate promotes a new version, time how long the
    running service takes to answer with it, else show it keeps answering with its champion."""
    import flows  # noqa: F401  (Prefect's offline environment, before Prefect is imported)
    from flows.requests import handle_request

    with bento.http_client(timeout=10) as http:
        before = http.post("/predict", json=quote).json()["model_version"]
        started = time.time()
        with console.status("the retrain request starts the `retrain` flow (Prefect): archive, compact, set, "
                            "train, evaluate, register, gate, promote ..."):  # fmt: skip
            outcome = handle_request(settings, published["_raw"], where=published["_offset"])
        timings["retrain_s"] = time.time() - started
        run = outcome.run
        promoted, version = bool(run.get("promoted")), str(run.get("version") or "")
        answered, swap_from = before, time.time()
        if promoted:
            deadline = swap_from + 6 * settings.serve_alias_poll_s + 30
            while answered != version and time.time() < deadline:
                time.sleep(0.25)
                answered = http.post("/predict", json=quote).json()["model_version"]
            if answered == version:
                timings["swap_s"] = time.time() - swap_from
        else:  # two polls of the alias later, still the champion
            time.sleep(2 * settings.serve_alias_poll_s + 1)
            answered = http.post("/predict", json=quote).json()["model_version"]
    _show(outcome, before, answered, timings)
    return {"status": outcome.status, "version": version, "promoted": promoted, "served_before": before,
            "served_after": answered, "gate_reasons": run.get("gate_reasons", []), "flow_run_id": outcome.flow_run_id,
            "mae": run.get("mae"), "timings": timings}  # fmt: skip


def _show(outcome, before: str, answered: str, timings: dict[str, float]) -> None:
    run = outcome.run
    table = Table(title="the loop, from the shift to the service", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="left")
    table.add_row("shift injected -> retrain request", _seconds(timings.get("detect_s")))
    table.add_row("retrain request -> flow", f"{outcome.status} (flow run {outcome.flow_run_id or '-'})")
    if run:
        verdict = "[green]promoted to champion[/]" if run.get("promoted") else "[yellow]not promoted[/]"
        table.add_row("candidate", f"version {run.get('version')}, MAE {run.get('mae', float('nan')):.3f}: {verdict}")
        for reason in run.get("gate_reasons", []):
            table.add_row("", f"- {reason}")
    table.add_row("request -> new version registered", _seconds(timings.get("retrain_s")))
    served = f"version {before} -> {answered}" if answered != before else f"still version {answered}"
    table.add_row("the running service answers with", served + (f" after {timings['swap_s']:.1f} s, no restart"
                                                                  if "swap_s" in timings else ""))  # fmt: skip
    console.print(table)
    if outcome.status not in ("completed",):
        console.print(f"[yellow]retrain request {outcome.status}: {outcome.reason}[/yellow]")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"
