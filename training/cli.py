"""`rental train`: build the point-in-time set, train, evaluate, log to MLflow, register, gate."""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from rental.connections import mask_url
from rental.progress import progress_bar
from rental.settings import get_settings

console = Console()
# Harmless and known: MLflow's pip-requirement inference and pydantic/setuptools deprecations.
QUIET_WARNINGS = (
    (UserWarning, r".*(pip|requirements|Hint: Inferred schema|integer column|Add type hints).*"),
    (FutureWarning, r".*"),
    (DeprecationWarning, r".*"),
)


def quiet_libraries() -> None:
    """MLflow's and alembic's INFO lines (a database migration per new tracking store, "Created
    version ...", "Registered model ...") and known harmless warnings would bury the progress
    bar and the result table; errors and real warnings still show."""
    import logging
    import warnings

    for name in ("mlflow", "alembic", "feast", "numexpr"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def train(
    engine: Annotated[
        str | None, typer.Option(help="Point-in-time join: asof (DuckDB, default) or feast (small sets).")
    ] = None,
    fit_engine: Annotated[
        Literal["local", "dask"] | None,
        typer.Option(help="Boosting: local (this process) or dask (a Dask cluster, RENTAL_DASK_*)."),
    ] = None,
    reproduce: Annotated[
        str | None, typer.Option(metavar="RUN_ID", help="Rebuild this run from its logged lineage and compare.")
    ] = None,
    force: Annotated[bool, typer.Option(help="With --reproduce: go on when the logged inputs differ.")] = False,
) -> None:
    """Train a candidate on the booking history; it becomes champion only through the gate."""
    from training.feature_spec import TrainingDataError
    from training.train import run_training

    settings = get_settings()
    if fit_engine:  # default: RENTAL_TRAIN_FIT_ENGINE
        settings = settings.model_copy(update={"train_fit_engine": fit_engine})
    quiet_libraries()
    if reproduce:  # registers nothing, moves no alias (training/reproduce.py)
        from training.reproduce import reproduce_command

        raise typer.Exit(reproduce_command(settings, reproduce, force, engine, console))
    try:
        with progress_bar(console) as bar:
            stage = bar.add_task("starting", total=None)
            boosting = bar.add_task(
                "boosting rounds (early stopping)", total=settings.xgb_num_boost_round, visible=False
            )

            def step(name: str) -> None:
                bar.update(stage, description=name)
                if name != "boosting" and bar.tasks[boosting].visible:
                    bar.update(boosting, total=bar.tasks[boosting].completed)

            def rounds(done: int) -> None:
                bar.update(boosting, completed=done, visible=True)

            result = run_training(settings, engine, step, rounds)
            bar.update(stage, description="done", total=1, completed=1)
    except TrainingDataError as exc:
        console.print(f"[red]cannot train:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"validation (run {result.run_id[:8]}, {settings.registered_model_name} v{result.version})")
    for column in ("", "MAE", "MAPE", "RMSLE"):
        table.add_column(column, justify="right" if column else "left")
    m = result.metrics
    for name, prefix in [("model", ""), ("noise floor", "noise_floor_"), ("global median", "global_median_"),
                         ("tier x category median", "tier_category_median_"), ("linear", "linear_")]:  # fmt: skip
        if f"{prefix}mae" in m:
            table.add_row(name, f"{m[f'{prefix}mae']:.3f}", f"{m[f'{prefix}mape']:.1%}", f"{m[f'{prefix}rmsle']:.4f}")
    console.print(table)
    if "attributes_only_mae" in m:
        beats = m["attributes_only_mae"] < m["attributes_only_brand_median_mae"]
        console.print(
            f"attributes only vs brand median ({m['attributes_only_items_held_out']:,.0f} held-out items): "
            f"MAE {m['attributes_only_mae']:.3f} against {m['attributes_only_brand_median_mae']:.3f} "
            + ("[green]beats the brand median[/green]" if beats else "[red]does not beat the brand median[/red]")
        )
    verdict = "[green]promoted to champion[/green]" if result.decision.promote else "[yellow]not promoted[/yellow]"
    console.print(f"version {result.version}: {verdict}")
    for reason in result.decision.reasons:
        console.print(f"  - {reason}")
    console.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    console.print(f"MLflow: {mask_url(settings.mlflow_tracking_uri)}, experiment {settings.train_experiment!r}")
