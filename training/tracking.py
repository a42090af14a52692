"""MLflow: where runs go, and the code version a run was trained from (``lineage.py`` logs the rest).

With the default SQLite backend the experiment's artifacts go under the data dir, not into an
``mlruns`` folder of whatever directory the command ran in.
"""

from __future__ import annotations

import hashlib
import subprocess

import mlflow

from rental.settings import REPO_ROOT, Settings


def use_tracking(settings: Settings) -> str:
    """Point MLflow at the settings' tracking URI and experiment; returns the experiment id."""
    from rental.storage import export_s3_endpoint

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        (settings.data_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    export_s3_endpoint(settings.s3_endpoint_url)  # artifacts on an S3-compatible server (RENTAL_STORAGE_URI)
    found = mlflow.get_experiment_by_name(settings.train_experiment)
    if found is not None:  # an experiment keeps the artifact location it was created with
        experiment_id = found.experiment_id
    else:
        location = settings.mlflow_artifact_location
        experiment_id = mlflow.create_experiment(settings.train_experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def code_version() -> dict[str, str]:
    """The git commit the code came from, whether tracked files had uncommitted changes, and a
    digest of those changes: a dirty tree is only rebuilt by the same commit plus the same diff.
    Untracked files are not part of the code's version. Without git (an image without ``.git``)
    every field is ``unknown``."""

    def git(*args: str, strip: bool = True) -> str:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
        return out.strip() if strip else out

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
        diff = git("diff", "HEAD", "--binary", "--no-ext-diff", strip=False) if changed else ""  # clean: sha of b""
    except (OSError, subprocess.CalledProcessError):
        return {"code.commit": "unknown", "code.dirty": "unknown", "code.diff_sha256": "unknown"}
    return {
        "code.commit": commit,
        "code.dirty": str(bool(changed)).lower(),
        "code.diff_sha256": hashlib.sha256(diff.encode()).hexdigest(),
    }
