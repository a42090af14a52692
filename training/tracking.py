"""MLflow: where runs go, and what makes a run reproducible (code version, data digest).

With the default SQLite backend the experiment's artifacts go under the data dir, not into an
``mlruns`` folder of whatever directory the command ran in.
"""

from __future__ import annotations

import subprocess

import mlflow

from rental.settings import REPO_ROOT, Settings


def use_tracking(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI and experiment; returns the experiment id."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        (settings.data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(settings.train_experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = (settings.data_dir / "mlflow" / "artifacts").as_uri() if uri.startswith("sqlite:") else None
        experiment_id = mlflow.create_experiment(settings.train_experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def code_version() -> dict[str, str]:
    """The git commit the code came from, and whether it had uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return {"code.commit": "unknown", "code.dirty": "unknown"}
    return {"code.commit": commit, "code.dirty": str(dirty).lower()}
