"""What a training run logs about its inputs, so that MLflow alone can rebuild it.

A run's lineage is the code (commit, dirty tree, digest of the diff), the lock file, the
installed versions of the libraries that shape the set and the model, the data (the training
set's digest, its rows and time range, each history file's sha256), Feast (its version, the
registry file's sha256, the feature service's definition and its digest), the seeds, and every
setting that shapes the set and the model (``train_*``, ``xgb_*``, ``seed``, a Dask fit's cluster
size). All of it goes to ``lineage.json`` (what ``reproduce.py`` reads back) and, flattened, to
the run's params and tags (what the MLflow UI shows and searches).

The data digest (``TrainingSet.digest``) covers every column of every row the model and its
evaluation read: the bookings, their point-in-time features and their prices. The history
files' digests change whenever the history grows; the rows of the run's window do not, so
only the data digest decides whether a run can be rebuilt.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import platform
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import TypeAdapter, ValidationError

from rental.settings import REPO_ROOT, Settings
from streaming.history.tables import history_paths
from training.dataset import TrainingSet
from training.feature_spec import ServiceSpec, TrainingDataError
from training.fit import Fitted
from training.tracking import code_version

LINEAGE_FILE = "lineage.json"
LOCK_FILE = "uv.lock"
SCHEMA = 1
# The libraries whose version changes the set or the model's numbers.
PACKAGES = ("xgboost", "numpy", "pandas", "pyarrow", "duckdb", "feast", "mlflow")
SHAPING_PREFIXES = ("train_", "xgb_")
# Also shape the model: the seed, and a Dask fit's cluster size (each worker samples its own rows).
SHAPING_NAMES = ("seed", "dask_workers", "dask_threads_per_worker")
MISSING = "missing"


class LineageError(TrainingDataError):
    """A run cannot be rebuilt: the message says what is missing or what differs."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (a history file can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lock_sha256(root: Path = REPO_ROOT) -> str:
    """The lock file's sha256 (``missing`` where the code runs without it, e.g. an image)."""
    path = root / LOCK_FILE
    return file_sha256(path) if path.is_file() else MISSING


def history_sha256(directory: Path) -> dict[str, str]:
    """Each history file's sha256, by file name."""
    return {p.name: file_sha256(p) if p.is_file() else MISSING for p in history_paths(directory)}


# A package installed under another distribution's name (the lock has XGBoost's CPU-only wheel).
DISTRIBUTIONS = {"xgboost": ("xgboost", "xgboost-cpu")}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        versions[name] = MISSING
        for distribution in DISTRIBUTIONS.get(name, (name,)):
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def shaping_settings(settings: Settings) -> dict[str, Any]:
    """The settings that shape the training set and the model, as JSON values."""
    names = {n for n in type(settings).model_fields if n.startswith(SHAPING_PREFIXES) or n in SHAPING_NAMES}
    return settings.model_dump(mode="json", include=names)


def restore_settings(settings: Settings, logged: dict[str, Any]) -> tuple[Settings, list[str]]:
    """``settings`` with the logged shaping values (typed as the fields declare them), and a note
    for each logged setting that no longer exists or no longer validates, or is new since."""
    fields, update, notes = type(settings).model_fields, {}, []
    for name, value in logged.items():
        if name not in fields:
            notes.append(f"setting {name} (logged {value!r}) no longer exists")
            continue
        try:
            update[name] = TypeAdapter(fields[name].annotation).validate_python(value)
        except ValidationError as exc:
            notes.append(f"setting {name}: the logged {value!r} no longer validates ({exc.errors()[0]['msg']})")
    notes += [f"setting {n} is new since the run: its current value is used" for n in shaping_settings(settings)
              if n not in logged]  # fmt: skip
    return settings.model_copy(update=update), notes


def _relative(path: str, root: Path) -> str:
    """A source glob relative to the data dir, so a moved data dir is the same definition."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def service_definition(spec: ServiceSpec, data_dir: Path) -> dict[str, Any]:
    """What training reads of the Feast registry: each view's key, ttl, source and typed features."""
    types = {(p.name_to_use(), f.name): str(f.dtype) for p in spec.service.feature_view_projections for f in p.features}
    return {
        "name": spec.name,
        "views": {
            v.name: {
                "join_key": v.join_key,
                "ttl_s": v.ttl.total_seconds() if v.ttl else None,
                "source": _relative(v.path, data_dir),
                "features": {f: types.get((v.name, f), "?") for f in v.features},
            }
            for v in spec.views
        },
    }


def canonical_sha256(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def registry_sha256(settings: Settings) -> str:
    """The registry file's sha256. It changes with every apply and every materialisation (Feast
    records their times), so it identifies the file, and the service's digest the definition."""
    from streaming.feature_store.store import repo_config

    path = Path(repo_config(settings).registry.path)
    return file_sha256(path) if path.is_file() else MISSING


def current_environment(settings: Settings, spec: ServiceSpec) -> dict[str, Any]:
    """The code, lock, libraries and Feast definition a run would get now."""
    definition = service_definition(spec, settings.data_dir)
    return {
        "code": {k.removeprefix("code."): v for k, v in code_version().items()},
        "lock_sha256": lock_sha256(),
        "packages": package_versions(),
        "feast": {
            "version": metadata.version("feast"),
            "registry_sha256": registry_sha256(settings),
            "service": spec.name,
            "service_digest": canonical_sha256(definition),
            "definition": definition,
        },
    }


def data_window(frame: pd.DataFrame) -> tuple[str, str]:
    """The first and last booking time of a training set, ISO 8601 (UTC)."""
    times = pd.to_datetime(frame["event_time"], utc=True)
    return times.min().isoformat(), times.max().isoformat()


def reference_sample_seed() -> int:
    from monitoring.reference import reference_frame  # the seed of the reference rows monitoring keeps

    return int(inspect.signature(reference_frame).parameters["seed"].default)


@dataclass(frozen=True)
class Lineage:
    code: dict[str, str]  # commit, dirty, diff_sha256
    lock_sha256: str
    packages: dict[str, str]
    feast: dict[str, Any]  # version, registry_sha256, service, service_digest, definition
    data: dict[str, Any]  # digest, rows, start, end, history_dir, history (file name: sha256)
    seeds: dict[str, Any]
    settings: dict[str, Any]  # train_*, xgb_*, seed, dask_workers, dask_threads_per_worker
    engine: str
    schema: int = SCHEMA

    @property
    def environment(self) -> dict[str, Any]:
        return {"code": self.code, "lock_sha256": self.lock_sha256, "packages": self.packages, "feast": self.feast}

    def params(self) -> dict[str, str]:
        """Flat MLflow params (the code goes to tags): what the UI shows beside the metrics."""
        out = {"lock.sha256": self.lock_sha256}
        out |= {f"data.history.{name}": sha for name, sha in self.data["history"].items()}
        out |= {f"feast.{k}": str(v) for k, v in self.feast.items() if k != "definition"}
        out |= {f"seed.{k}": str(v) for k, v in self.seeds.items()}
        out |= {f"settings.{k}": json.dumps(v) if isinstance(v, list) else str(v) for k, v in self.settings.items()}
        return out | {f"env.{k}": v for k, v in self.packages.items()}

    def tags(self) -> dict[str, str]:
        tags = {f"code.{k}": v for k, v in self.code.items()}
        return tags | {"mlflow.source.git.commit": self.code["commit"]}


def capture(data: TrainingSet, fitted: Fitted, settings: Settings) -> Lineage:
    start, end = data_window(data.frame)
    return Lineage(
        **current_environment(settings, data.service),
        data={"digest": data.digest, "rows": len(data.frame), "start": start, "end": end,
              "history_dir": str(settings.history_dir), "history": history_sha256(settings.history_dir)},
        seeds={"settings": settings.seed, "xgboost": fitted.params["seed"], "attributes": settings.seed,
               "reference_sample": reference_sample_seed(), "encoding_folds": "none: a stable hash of item_id"},
        settings=shaping_settings(settings),
        engine=data.engine,
    )  # fmt: skip


def log_lineage(data: TrainingSet, fitted: Fitted, settings: Settings) -> Lineage:
    """Inside an active run: the lineage as params, tags and ``lineage.json``."""
    lineage = capture(data, fitted, settings)
    mlflow.log_params(lineage.params())
    mlflow.set_tags(lineage.tags())
    mlflow.log_dict(asdict(lineage), LINEAGE_FILE)
    return lineage


def read_lineage(client: MlflowClient, run_id: str) -> Lineage:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, LINEAGE_FILE, tmp)
        except (MlflowException, OSError):
            raise LineageError(
                f"run {run_id} logged no {LINEAGE_FILE} (it was trained before runs logged their lineage): "
                "it cannot be rebuilt from MLflow"
            ) from None
        raw = json.loads(Path(path).read_text())
    if raw.get("schema") != SCHEMA:
        raise LineageError(f"run {run_id}'s {LINEAGE_FILE} has schema {raw.get('schema')}; this code reads {SCHEMA}")
    return Lineage(**raw)


@dataclass(frozen=True)
class Difference:
    what: str  # a dotted path into the lineage, e.g. "code.commit" or "data.digest"
    logged: Any
    current: Any
    blocking: bool  # False: a note (the run can still be rebuilt exactly)

    def __str__(self) -> str:
        return f"{self.what}: the run logged {_shown(self.logged)}, now {_shown(self.current)}"


def _shown(value: Any) -> str:
    return "(absent)" if value is None else repr(value) if isinstance(value, str) and not value else str(value)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out |= flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


# Identifies the file, not the definition (see ``registry_sha256``): a note, never a refusal.
NOTE_ONLY = ("feast.registry_sha256",)


def differences(logged: dict[str, Any], current: dict[str, Any]) -> list[Difference]:
    """Every leaf that differs between two lineage dicts (an ``unknown`` code version differs
    even from itself: it cannot be checked)."""
    flat_logged, flat_current = flatten(logged), flatten(current)
    found = []
    for key in sorted(flat_logged.keys() | flat_current.keys()):
        was, now = flat_logged.get(key), flat_current.get(key)
        if was != now or (key.startswith("code.") and was == "unknown"):
            found.append(Difference(key, was, now, blocking=key not in NOTE_ONLY))
    return found
