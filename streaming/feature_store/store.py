"""The Feast store, configured from settings: the same repo the `feast` CLI applies.

``feature_repo/feature_store.yaml`` holds the local defaults for the CLI; here the Redis
address, registry path and repo path come from settings, so REDIS_URL and RENTAL_DATA_DIR
move everything at once.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml
from feast import FeatureService, FeatureStore
from feast.repo_config import RepoConfig

from rental.connections import mask_url, redis_credentials, redis_tls_options
from rental.settings import REPO_ROOT, Settings, get_settings
from rental.storage import export_s3_endpoint
from streaming.feature_store.views import FEATURE_SERVICE

FEATURE_REPO = REPO_ROOT / "feature_repo"


def _feast_value(value: str) -> str:
    """A string Feast's parser gives back as it is: it splits its connection string at commas and
    JSON-decodes each value (a password ``123`` would arrive as an int, ``null`` as no password),
    so the value goes as a JSON string with its commas escaped."""
    return json.dumps(value).replace(",", "\\u002c")


def feast_redis_connection(settings: Settings, redis_url: str | None = None) -> str:
    """REDIS_URL (``redis[s]://[user[:password]@]host:port/db``, user and password URL-encoded) and
    the TLS settings as Feast's "host:port,db=N,ssl=true,username=...,password=..." form, which
    Feast passes on to redis-py as keyword arguments. The URL's query arguments (redis-py's
    ``?ssl_cert_reqs=none`` and the like) go along."""
    redis_url = redis_url or settings.redis_url
    url = urlsplit(redis_url)
    if url.scheme not in ("redis", "rediss"):
        raise ValueError(f"REDIS_URL must start with redis:// or rediss://, got {mask_url(redis_url)!r}")
    host = url.hostname or "127.0.0.1"
    if ":" in host:
        raise ValueError(f"Feast's Redis connection string cannot name an IPv6 address ({host}): use a host name")
    parts = [f"{host}:{url.port or 6379}", f"db={(url.path or '/0').strip('/') or 0}"]
    user, password = redis_credentials(redis_url)
    if user:
        parts.append(f"username={_feast_value(user)}")
    if password is not None:
        parts.append(f"password={_feast_value(password)}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    parts += [f"{arg}={_feast_value(path)}" for arg, path in redis_tls_options(settings, redis_url).items()]
    parts += [f"{key}={value if ',' not in value else _feast_value(value)}" for key, value in parse_qsl(url.query)]
    return ",".join(parts)


def repo_config(settings: Settings) -> RepoConfig:
    raw = yaml.safe_load((FEATURE_REPO / "feature_store.yaml").read_text())
    raw["registry"]["path"] = settings.feast_registry_path  # a file, or s3:// (boto3, FEAST_S3_ENDPOINT_URL)
    export_s3_endpoint(settings.s3_endpoint_url)
    raw["online_store"]["connection_string"] = feast_redis_connection(settings)
    return RepoConfig(repo_path=FEATURE_REPO, **raw)


def feature_store(settings: Settings) -> FeatureStore:
    (settings.data_dir / "feast").mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings))


@contextmanager
def _repo_for(settings: Settings):
    """Feast imports the repo's modules by name, and they read paths from settings: import them
    afresh, with the environment pointing at these settings (data dir, storage root, endpoint)."""
    names = {"RENTAL_DATA_DIR": str(settings.data_dir), "RENTAL_STORAGE_URI": settings.storage_uri,
             "RENTAL_S3_ENDPOINT_URL": settings.s3_endpoint_url}  # fmt: skip
    cwd, path, env = os.getcwd(), list(sys.path), {name: os.environ.get(name) for name in names}
    sys.path.insert(0, str(FEATURE_REPO))
    for name, value in names.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()
    for module in [m for m in sys.modules if (FEATURE_REPO / f"{m}.py").exists()]:
        del sys.modules[module]
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
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
