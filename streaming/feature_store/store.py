"""The Feast store, configured from settings: the same repo the `feast` CLI applies.

``feature_repo/feature_store.yaml`` holds the local defaults for the CLI; here the Redis
address, registry path and repo path come from settings, so REDIS_URL and RENTAL_DATA_DIR
move everything at once.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from urllib.parse import urlparse

import yaml
from feast import FeatureService, FeatureStore
from feast.repo_config import RepoConfig

from rental.settings import REPO_ROOT, Settings, get_settings
from streaming.feature_store.views import FEATURE_SERVICE

FEATURE_REPO = REPO_ROOT / "feature_repo"


def feast_redis_connection(redis_url: str) -> str:
    """redis://[:password@]host:port/db -> Feast's "host:port,db=N[,password=...]" form."""
    url = urlparse(redis_url)
    if url.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must start with redis:// or rediss://, got {redis_url!r}")
    parts = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}", f"db={(url.path or '/0').strip('/') or 0}"]
    if url.password:
        parts.append(f"password={url.password}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def repo_config(settings: Settings) -> RepoConfig:
    raw = yaml.safe_load((FEATURE_REPO / "feature_store.yaml").read_text())
    raw["registry"]["path"] = str(settings.data_dir / "feast" / "registry.db")
    raw["online_store"]["connection_string"] = feast_redis_connection(settings.redis_url)
    return RepoConfig(repo_path=FEATURE_REPO, **raw)


def feature_store(settings: Settings) -> FeatureStore:
    (settings.data_dir / "feast").mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings))


@contextmanager
def _repo_for(settings: Settings):
    """Feast imports the repo's modules by name, and they read paths from settings: import them
    afresh, with the environment pointing at these settings."""
    cwd, path, env = os.getcwd(), list(sys.path), os.environ.get("RENTAL_DATA_DIR")
    sys.path.insert(0, str(FEATURE_REPO))
    os.environ["RENTAL_DATA_DIR"] = str(settings.data_dir)
    get_settings.cache_clear()
    for module in [m for m in sys.modules if (FEATURE_REPO / f"{m}.py").exists()]:
        del sys.modules[module]
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        if env is None:
            os.environ.pop("RENTAL_DATA_DIR", None)
        else:
            os.environ["RENTAL_DATA_DIR"] = env
        get_settings.cache_clear()


def apply(settings: Settings) -> None:
    """What `feast apply` does, with the settings' configuration."""
    from feast.repo_operations import apply_total

    (settings.data_dir / "feast").mkdir(parents=True, exist_ok=True)
    with _repo_for(settings), redirect_stdout(sys.stderr):  # keep stdout for results (benchmarks' JSON)
        # Feast cannot validate a glob path (it warns for each); the writer owns these folders.
        apply_total(repo_config(settings), Path(FEATURE_REPO), skip_source_validation=True)


def model_feature_service(store: FeatureStore) -> FeatureService:
    """Fetched once and reused: fetching it per request costs ~5 ms (docs/architecture.md)."""
    return store.get_feature_service(FEATURE_SERVICE)
