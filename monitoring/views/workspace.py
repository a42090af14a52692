"""The local Evidently UI workspace: every window's snapshots in one project, so the UI shows
the figures over time. Offline: telemetry is off (``DO_NOT_TRACK=1``) and nothing is fetched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rental.settings import Settings

PROJECT = "rental-price monitoring"


def workspace_dir(settings: Settings) -> Path:
    return settings.monitor_dir / "workspace"


def add_snapshots(settings: Settings, snapshots: dict) -> None:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(workspace_dir(settings)))
    found = workspace.search_project(PROJECT)
    if found:
        project = found[0]
    else:
        project = workspace.create_project(PROJECT, description="drift, quality, data health")
        _dashboard(project)
    for snapshot in snapshots.values():
        workspace.add_run(project.id, snapshot, include_data=False)


# The figures over time, one line each: (title, metric, labels). The quality metrics are
# MeanValue over the columns ``checks/frames.py`` derives; drift is the drift report's.
PANELS = (
    ("price bias: mean ln(paid / quoted)", "MeanValue", {"column": "log_ratio"}),
    ("MAPE of quoted against paid", "MeanValue", {"column": "ape"}),
    ("MAE of quoted against paid", "MeanValue", {"column": "abs_error"}),
    ("share of the model's features drifted", "DriftedColumnsCount", {"value_type": "share"}),
    ("drift of the quoted price (Wasserstein)", "ValueDrift", {"column": "prediction"}),
    ("degraded quotes", "MeanValue", {"column": "degraded"}),
)


def _dashboard(project) -> None:
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    for title, metric, labels in PANELS:
        panel = line_plot_panel(title, [PanelMetric(legend=title, metric=metric, metric_labels=labels)], size="half")
        project.dashboard.add_panel(panel, tab="over time")


def ui_command(settings: Settings, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str]]:
    """The `evidently ui` process over the workspace, and its environment (telemetry off)."""
    evidently = Path(sys.executable).with_name("evidently")
    command = [str(evidently), "ui", "--workspace", str(workspace_dir(settings)), "--host", host,
               "--port", str(settings.monitor_ui_port)]  # fmt: skip
    return command, os.environ | {"DO_NOT_TRACK": "1"}


def run_ui(settings: Settings, host: str = "127.0.0.1") -> int:
    workspace_dir(settings).mkdir(parents=True, exist_ok=True)
    command, env = ui_command(settings, host)
    return subprocess.call(command, env=env)
