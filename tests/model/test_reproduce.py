"""Reproducible runs against a real MLflow (SQLite in a temp dir) and the shared trained world.

The run trains on the world's history less its last two days; the reproduction reads the whole
history, so it also proves that a history that only grew after a run rebuilds the same rows.
The code part of the current environment is pinned to the run's: other engineers commit to this
checkout while the suite runs (the comparison of commits is covered in tests/unit/test_lineage.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from rental.settings import REPO_ROOT
from streaming.feature_store import FEATURE_SERVICE, feature_store
from streaming.history.tables import history_paths
from training.feature_spec import service_spec
from training.lineage import LINEAGE_FILE, current_environment, file_sha256, read_lineage
from training.reproduce import RELATIVE_TOLERANCE, ReproductionRefused, reproduce
from training.train import run_training

pytestmark = pytest.mark.integration


def _history_copy(source: Path, target: Path, edit) -> Path:
    """The history in ``target`` with its bookings table passed through ``edit`` (types kept)."""
    target.mkdir(parents=True)
    for path in history_paths(source):
        shutil.copy(path, target / path.name)
    bookings = target / "bookings.parquet"
    pq.write_table(edit(pq.read_table(bookings)), bookings)
    return target


@pytest.fixture(scope="module")
def logged(world, tmp_path_factory):
    """A registry with one run, trained on the history less its last two days."""
    root = tmp_path_factory.mktemp("reproduce")

    def shorter(table: pa.Table) -> pa.Table:
        cut = pc.subtract(pc.max(table["event_time"]), pa.scalar(2 * 86_400_000_000, pa.duration("us")))
        return table.filter(pc.less(table["event_time"], cut))

    earlier = _history_copy(world.history_dir, root / "earlier", shorter)
    local = world.model_copy(update={"mlflow_tracking_uri_env": f"sqlite:///{root / 'mlflow.db'}"})
    result = run_training(local.model_copy(update={"history_dir_env": earlier}))
    now = local.model_copy(update={"history_dir_env": world.history_dir})  # the history has grown since
    return now, result, earlier, root


def _environment(settings, run_id: str) -> dict:
    """The environment as it is now, with the code pinned to the run's (see the module's doc)."""
    environment = current_environment(settings, service_spec(feature_store(settings), FEATURE_SERVICE))
    return environment | {"code": read_lineage(MlflowClient(settings.mlflow_tracking_uri), run_id).code}


def _registry_state(settings) -> tuple[list[str], str]:
    client = MlflowClient(settings.mlflow_tracking_uri)
    versions = sorted(v.version for v in client.search_model_versions(f"name='{settings.registered_model_name}'"))
    alias = client.get_model_version_by_alias(settings.registered_model_name, settings.serving_alias).version
    return versions, alias


def test_a_run_logs_every_input_it_was_built_from(logged):
    settings, result, earlier, _ = logged
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(result.run_id)
    lineage = read_lineage(client, result.run_id)
    params, tags = run.data.params, run.data.tags
    assert set(lineage.code) == {"commit", "dirty", "diff_sha256"} and len(lineage.code["commit"]) == 40
    assert tags["code.commit"] == tags["mlflow.source.git.commit"] == lineage.code["commit"]
    assert tags["code.dirty"] in ("true", "false") and len(tags["code.diff_sha256"]) == 64
    assert params["lock.sha256"] == lineage.lock_sha256 == file_sha256(REPO_ROOT / "uv.lock")
    assert params["data.digest"] == lineage.data["digest"] and lineage.data["rows"] == int(params["data.rows"])
    assert lineage.data["start"] < lineage.data["end"]
    for path in history_paths(earlier):
        assert params[f"data.history.{path.name}"] == lineage.data["history"][path.name] == file_sha256(path)
    feast = lineage.feast
    assert feast["service"] == "rental_price_v1" and params["feast.service_digest"] == feast["service_digest"]
    assert feast["version"] == params["feast.version"] and len(feast["registry_sha256"]) == 64
    views = feast["definition"]["views"]
    assert views["item_popularity"]["features"]["bookings_7d"] == "Int64"
    assert not views["item_popularity"]["source"].startswith("/"), "relative to the data dir"
    assert lineage.seeds["xgboost"] == settings.seed == int(params["seed.xgboost"]) == int(params["xgb.seed"])
    assert {"attributes", "reference_sample", "encoding_folds"} <= set(lineage.seeds)
    assert lineage.settings["xgb_learning_rate"] == settings.xgb_learning_rate == 0.2  # the world's own
    assert lineage.settings["train_excluded_features"] == list(settings.train_excluded_features)
    assert params["settings.train_nthread"] == str(settings.train_nthread) and lineage.engine == "asof"
    assert {"xgboost", "numpy", "pandas", "python"} <= set(lineage.packages)
    assert LINEAGE_FILE in {a.path for a in client.list_artifacts(result.run_id)}


def test_reproduce_rebuilds_the_same_prices_and_registers_nothing(logged):
    settings, result, _, _ = logged
    before = _registry_state(settings)
    got = reproduce(settings, result.run_id, environment=_environment(settings, result.run_id))
    c = got.comparison
    assert c.matches and c.max_rel_diff <= RELATIVE_TOLERANCE, c
    assert c.rows > 50 and c.logged_mae == pytest.approx(result.metrics["mae"], rel=1e-9)
    assert c.rebuilt_mae == pytest.approx(c.logged_mae, rel=1e-6)
    assert got.best_iteration == (result.best_iteration, result.best_iteration)
    assert not got.warnings and any("history files changed" in n for n in got.notes), got.notes
    assert _registry_state(settings) == before
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.get_run(got.run_id)
    assert run.data.tags["reproduction.of"] == result.run_id and run.data.tags["reproduction.forced"] == "false"
    assert run.data.tags["reproduction.verdict"] == c.verdict
    assert run.data.metrics["reproduction_equal_share"] == c.equal_share
    assert run.data.params["data.digest"] == client.get_run(result.run_id).data.params["data.digest"]
    assert not client.search_model_versions(f"run_id='{got.run_id}'")


def test_a_changed_history_is_refused_naming_the_digests(logged):
    settings, result, earlier, root = logged

    def repriced(table: pa.Table) -> pa.Table:  # the last booking (a validation row) paid more
        prices = table["price_per_day"].to_numpy().copy()
        last = int(np.argmax(table["event_time"].to_numpy()))
        prices[last] *= 1.5
        return table.set_column(table.schema.get_field_index("price_per_day"), "price_per_day", pa.array(prices))

    changed = settings.model_copy(update={"history_dir_env": _history_copy(earlier, root / "changed", repriced)})
    logged_digest = read_lineage(MlflowClient(settings.mlflow_tracking_uri), result.run_id).data["digest"]
    with pytest.raises(ReproductionRefused, match=r"data\.digest") as refused:
        reproduce(changed, result.run_id, environment=_environment(settings, result.run_id))
    assert logged_digest in str(refused.value) and "--force" in str(refused.value)
    assert [d.what for d in refused.value.differences] == ["data.digest"]


def test_other_code_is_refused_and_force_rebuilds_with_a_warning(logged):
    settings, result, _, _ = logged
    environment = _environment(settings, result.run_id)
    other = environment | {"code": environment["code"] | {"commit": "0" * 40}}
    with pytest.raises(ReproductionRefused, match=r"code\.commit") as refused:
        reproduce(settings, result.run_id, environment=other)
    assert environment["code"]["commit"] in str(refused.value) and "0" * 40 in str(refused.value)
    before = _registry_state(settings)
    got = reproduce(settings, result.run_id, force=True, environment=other)
    assert [d.what for d in got.warnings] == ["code.commit"] and got.comparison.matches
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(got.run_id)
    assert run.data.tags["reproduction.forced"] == "true" and "code.commit" in run.data.tags["reproduction.differences"]
    assert _registry_state(settings) == before


def test_the_cli_says_when_a_run_cannot_be_found(logged, monkeypatch):
    settings, *_ = logged
    from rental.cli import app
    from rental.settings import get_settings

    monkeypatch.setenv("RENTAL_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    get_settings.cache_clear()
    try:
        missing = CliRunner().invoke(app, ["train", "--reproduce", "0123456789abcdef"])
        engine = CliRunner().invoke(app, ["train", "--reproduce", "0123456789abcdef", "--engine", "feast"])
    finally:
        get_settings.cache_clear()
    assert missing.exit_code == 2 and "no run 0123456789abcdef" in " ".join(missing.output.split()), missing.output
    assert engine.exit_code == 2 and "drop --engine" in engine.output
