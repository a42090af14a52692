"""The offline store, the Feast registry and MLflow's artifacts on S3, against a real S3 API
server (moto's server mode on loopback, a bucket of its own), and the same checks on a local
data dir: the code paths differ only below ``rental/storage.py``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from rental.settings import REPO_ROOT, Settings
from rental.storage import open_folder
from streaming.consumer.checkpoint import BackgroundSaver
from streaming.feature_store.offline import SCHEMAS, STREAM_COMPRESSION, compact, read_view, view_files, write_rows
from streaming.feature_store.store import FEATURE_SERVICE, feature_store
from tests.model.conftest import make_world
from tests.worlds.ports import free_port
from tests.worlds.stream_world import wait_for
from training.dataset import build_training_set, read_history
from training.feature_spec import service_spec

pytestmark = pytest.mark.integration
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rental-test", "AWS_SECRET_ACCESS_KEY": "rental-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
POISON = 987_654


def _listening(port: int, process: subprocess.Popen, what: str) -> None:
    """Wait until ``process`` accepts connections on ``port``; fail at once if it exits."""

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"{what} exited ({process.returncode}) before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(up, 60, f"{what} on port {port}")


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server on a free loopback port, as its own process; its endpoint URL."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _listening(port, server, f"moto's S3 server (log: {log.name})")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def aws_env(s3_server) -> Iterator[None]:
    """Test credentials for every S3 client (the AWS chain reads them from the environment); the
    endpoint variables the project exports for MLflow and Feast are put back afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        for name in ("MLFLOW_S3_ENDPOINT_URL", "FEAST_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                     "RENTAL_STORAGE_URI", "RENTAL_S3_ENDPOINT_URL", "AWS_PROFILE"):  # fmt: skip
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def bucket(s3_server, aws_env) -> str:
    name = f"rental-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return name


def _objects(endpoint: str, bucket: str, prefix: str) -> list[str]:
    """Keys under ``prefix``, listed by a client of the test's own (not the project's)."""
    pages = boto3.client("s3", endpoint_url=endpoint).get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix)  # fmt: skip
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture(params=["local", "s3"])
def where(request, s3_server, bucket) -> dict:
    """Settings overrides: nothing (under the data dir), or a fresh prefix of the test bucket."""
    if request.param == "local":
        return {}
    return {"storage_uri": f"s3://{bucket}/run-{uuid.uuid4().hex[:8]}/", "s3_endpoint_url": s3_server}


def _rows(day: date, hours: range, value: int) -> list[dict]:
    base = pd.Timestamp(day, tz="UTC")
    empty = dict.fromkeys(SCHEMAS["item_popularity"].names)
    return [empty | {"item_id": f"item-{h % 3}", "event_timestamp": (base + pd.Timedelta(hours=h)).value // 1_000,
                     "bookings_7d": value + h} for h in hours]  # fmt: skip


def _stored(settings: Settings, s3_server: str, bucket: str) -> list[str]:
    """The offline store's files as found where they should be, relative to the store, in path order."""
    if settings.storage_uri:
        prefix = settings.storage_uri.removeprefix(f"s3://{bucket}/") + "/offline/"
        found = [k.removeprefix(prefix) for k in _objects(s3_server, bucket, prefix)]
    else:
        found = [p.relative_to(settings.offline_dir).as_posix() for p in settings.offline_dir.rglob("*") if p.is_file()]
    return sorted(found, key=lambda path: path.split("/"))


def test_checkpoint_files_land_whole_and_compaction_merges_the_closed_days(where, tmp_path, s3_server, bucket):
    settings = Settings(data_dir=tmp_path, **where)
    saver = BackgroundSaver()
    checkpoints = [_rows(date(2024, 10, 3), range(0, 24, 6), 100) + _rows(date(2024, 10, 4), range(0, 12, 6), 200),
                   _rows(date(2024, 10, 3), range(1, 24, 6), 300) + _rows(date(2024, 10, 4), range(1, 12, 6), 400)]  # fmt: skip
    for n, rows in enumerate(checkpoints, 1):  # as a stage checkpoints: the files are written by a forked child
        saver.start(lambda rows=rows: write_rows(settings, "item_popularity", rows, tag="items",
                                                 compression=STREAM_COMPRESSION), lambda: None)  # fmt: skip
        saver.wait()
        assert len(view_files(settings, "item_popularity")) == 2 * n  # the next child forks from a client in use
    files = view_files(settings, "item_popularity")
    assert files == _stored(settings, s3_server, bucket)  # every file where it belongs, and nothing else
    assert [f.rsplit("/", 1)[0] for f in files] == ["item_popularity/date=2024-10-03"] * 2 + [
        "item_popularity/date=2024-10-04"] * 2  # fmt: skip
    assert all(f.rsplit("/", 1)[1].startswith("items-") and f.endswith(".parquet") for f in files)
    if settings.storage_uri:
        assert not settings.offline_dir.exists()  # nothing went to the local disk
    written = pd.DataFrame([r for rows in checkpoints for r in rows])
    key = ["item_id", "event_timestamp"]
    before = read_view(settings, "item_popularity").sort_values(key, ignore_index=True)
    assert len(before) == len(written) == 12
    assert before["bookings_7d"].tolist() == written.sort_values(key)["bookings_7d"].tolist()

    # 10-03 is closed before 10-04: its two files become one; the open day is left alone
    assert compact(settings, before=date(2024, 10, 4), views=["item_popularity"]) == {"item_popularity": (2, 1)}
    after_files = view_files(settings, "item_popularity")
    assert after_files == _stored(settings, s3_server, bucket)
    assert [f.rsplit("/", 1)[1].split("-")[0] for f in after_files] == ["compacted", "items", "items"]
    after = read_view(settings, "item_popularity").sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(after, before)
    assert compact(settings, before=date(2024, 10, 4), views=["item_popularity"]) == {"item_popularity": (0, 0)}


@pytest.fixture(scope="module")
def reference_digest(tmp_path_factory, settings) -> str:
    """The training set of the small world built on the local disk: what S3 must reproduce."""
    local = make_world(tmp_path_factory.mktemp("s3-reference"), settings, seed=9, items=60, bookings=1_500)
    return build_training_set(local).digest


def test_the_training_set_is_built_point_in_time_from_the_store(where, tmp_path, settings, reference_digest,
                                                                s3_server, bucket):  # fmt: skip
    world = make_world(tmp_path, settings, seed=9, items=60, bookings=1_500, **where)  # backfill and feast apply
    # The registry is where the settings say, and its feature service reads its views from the store.
    spec = service_spec(feature_store(world), FEATURE_SERVICE)
    assert {v.path for v in spec.views} == {f"{world.offline_uri}/{v.name}/**/*.parquet" for v in spec.views}
    registry = open_folder(world.feast_registry_path.rsplit("/", 1)[0], world.s3_endpoint_url)
    assert registry.read_bytes("other.db") is None
    if world.storage_uri:
        prefix = world.storage_uri.removeprefix(f"s3://{bucket}/")
        assert _objects(s3_server, bucket, f"{prefix}/feast/") == [f"{prefix}/feast/registry.db"]
        stored = boto3.client("s3", endpoint_url=s3_server).get_object(Bucket=bucket, Key=f"{prefix}/feast/registry.db")
        assert registry.read_bytes("registry.db") == stored["Body"].read()
        assert not (tmp_path / "feast" / "registry.db").exists() and not world.offline_dir.exists()
    else:
        assert registry.read_bytes("registry.db") == (tmp_path / "feast" / "registry.db").read_bytes()
    assert build_training_set(world).digest == reference_digest  # the same rows, to the last bit

    # Point in time: rows stamped at a booking's own time or later never reach its row; one
    # just before it does.
    target = read_history(world).bookings.iloc[700]
    at, item = pd.Timestamp(target["event_time"]), target["item_id"]
    for offset in (pd.Timedelta(0), pd.Timedelta(hours=1)):
        write_rows(world, "item_popularity", _probe(item, at + offset, POISON), "probe")
    frame = build_training_set(world).frame
    assert frame.loc[frame["booking_id"] == target["booking_id"], "bookings_7d"].iloc[0] != POISON
    write_rows(world, "item_popularity", _probe(item, at - pd.Timedelta(microseconds=2), 4242), "probe")
    frame = build_training_set(world).frame
    assert frame.loc[frame["booking_id"] == target["booking_id"], "bookings_7d"].iloc[0] == 4242


def _probe(item: str, at: pd.Timestamp, value: int) -> list[dict]:
    return [dict.fromkeys(SCHEMAS["item_popularity"].names) | {"item_id": item, "event_timestamp": at.value // 1_000,
                                                                "bookings_7d": value}]  # fmt: skip


LOAD_CHAMPION = """
import json, sys
from bento_service.champion import ModelHolder
from rental.settings import get_settings
holder = ModelHolder(get_settings())
assert holder.refresh(), holder.error
print(json.dumps({"version": holder.current.version,
                  "prices": holder.current.predict(json.loads(sys.argv[1])).tolist()}))
"""


def _train_and_serve(world: Settings, env: dict[str, str]) -> str:
    """``rental train``'s run made champion, then the champion loaded by the serving code in a
    process of its own configured only by ``env``: it prices as the run's model does. The
    run's artifact URI."""
    from mlflow import MlflowClient

    from training.predictor.price_predictor import PricePredictor
    from training.registry import input_example
    from training.train import run_training

    result = run_training(world)
    client = MlflowClient(world.mlflow_tracking_uri)  # champion whatever the gate said of so small a world
    client.set_registered_model_alias(world.registered_model_name, world.serving_alias, result.version)
    loaded = PricePredictor.from_registry(world, version=result.version)
    records = json.loads(input_example(build_training_set(world).frame.tail(50), loaded.spec)
                         .to_json(orient="records", date_format="iso"))  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RENTAL_", "MLFLOW_", "FEAST_"))}
    env = clean | {"RENTAL_DATA_DIR": str(world.data_dir), "MLFLOW_TRACKING_URI": world.mlflow_tracking_uri} | env
    out = subprocess.run([sys.executable, "-c", LOAD_CHAMPION, json.dumps(records)], env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    served = json.loads(out.stdout.strip().splitlines()[-1])
    assert served["version"] == result.version
    np.testing.assert_allclose(served["prices"], loaded.predict(records), rtol=1e-6)
    return client.get_run(result.run_id).info.artifact_uri


def _artifact_names(where: dict, folder: Path, s3_server: str, bucket: str) -> set[str]:
    """The file names under ``folder`` (local) or the same path under the test prefix (S3)."""
    if where:
        prefix = where["storage_uri"].removeprefix(f"s3://{bucket}/").rstrip("/") + "/" + folder.name + "/"
        return {key.rsplit("/", 1)[-1] for key in _objects(s3_server, bucket, prefix)}
    return {p.name for p in folder.rglob("*") if p.is_file()}


def test_a_training_run_logs_to_the_store_and_its_model_loads_back(where, tmp_path, settings, s3_server, bucket):
    from training.predictor.price_predictor import BOOSTER_FILE
    from training.predictor.spec import SPEC_FILE

    world = make_world(tmp_path, settings, seed=9, items=60, bookings=1_500, **where)
    world = world.model_copy(update={"mlflow_tracking_uri_env": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    # The serving process is told only the settings: the endpoint reaches MLflow from them.
    env = {"RENTAL_STORAGE_URI": world.storage_uri, "RENTAL_S3_ENDPOINT_URL": s3_server} if where else {}
    artifact_uri = _train_and_serve(world, env)
    assert artifact_uri.startswith(world.mlflow_artifact_location + "/")
    if where:
        assert artifact_uri.startswith(f"{world.storage_uri}/mlflow/artifacts/")
        assert not (tmp_path / "mlflow" / "artifacts").exists()
    names = _artifact_names(where, tmp_path / "mlflow", s3_server, bucket)
    assert {"MLmodel", BOOSTER_FILE, SPEC_FILE} <= names, names


@pytest.fixture
def mlflow_server(where, tmp_path, s3_server) -> Iterator[str]:
    """``mlflow server`` proxying artifacts to ``--artifacts-destination``: the bucket, or a local
    folder; its URL. Only the server is given the S3 endpoint and credentials."""
    destination = f"{where['storage_uri'].rstrip('/')}/mlflow-server" if where else str(tmp_path / "mlflow-server")
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", destination, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=os.environ | {"MLFLOW_S3_ENDPOINT_URL": s3_server}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(tmp_path / 'mlflow-server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: a group of their own
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:  # its workers finish their requests slowly; nothing to keep
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


def test_a_tracking_server_keeps_the_artifacts_in_its_own_store(where, tmp_path, settings, mlflow_server,
                                                                 s3_server, bucket):  # fmt: skip
    """With MLFLOW_TRACKING_URI naming a server, the run's files go through the server to its
    artifact store, and the serving process needs no access to that store."""
    from training.predictor.price_predictor import BOOSTER_FILE

    world = make_world(tmp_path, settings, seed=9, items=60, bookings=1_500, **where)
    world = world.model_copy(update={"mlflow_tracking_uri_env": mlflow_server})
    assert world.mlflow_artifact_location is None  # the server decides
    no_s3 = {name: "" for name in CREDENTIALS} | {"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}  # nothing usable
    artifact_uri = _train_and_serve(world, no_s3)
    assert artifact_uri.startswith("mlflow-artifacts:/")
    names = _artifact_names(where, tmp_path / "mlflow-server", s3_server, bucket)
    assert {"MLmodel", BOOSTER_FILE} <= names, names


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory) -> Iterator[str]:
    """A redis-server of this module's own on a free port (the live consumer empties its db)."""
    from rental.servers.redis import binary

    if binary() is None:
        pytest.skip("redis-server is not installed")
    root, port = tmp_path_factory.mktemp("redis"), free_port()
    process = subprocess.Popen([binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root),
                                "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        _listening(port, process, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_live_consumer_checkpoints_its_rows_into_the_store(where, tmp_path, settings, own_redis, s3_server,
                                                               bucket):  # fmt: skip
    """`rental stream features` as its own process, told only the environment: its checkpoints
    append the stream's rows to the store, the same rows the batch backfill computes."""
    from streaming.backfill import timeline
    from streaming.events import to_us
    from streaming.feature_store.offline import to_table
    from streaming.features.pipeline import Catalogue, FeaturePipeline
    from streaming.producer import make_producer, send_events
    from streaming.simulator.history import simulate
    from streaming.simulator.replay import history_events
    from streaming.simulator.world import SimulationConfig
    from tests.worlds.stream_world import make_world as make_stream_world

    now = pd.Timestamp("2026-06-01", tz="UTC")
    history = simulate(SimulationConfig(seed=5, items=60, bookings=1_500, end=now.date()))
    env = {"RENTAL_STORAGE_URI": where["storage_uri"], "RENTAL_S3_ENDPOINT_URL": s3_server} if where else {}
    base = settings.model_copy(update={"redis_url_env": own_redis})
    world = make_stream_world(tmp_path, base, history, 0, RENTAL_STREAM_NOW=now.isoformat(),
                              RENTAL_CHECKPOINT_EVERY_S="0.3", RENTAL_STREAM_MAX_POLL_RECORDS="200", **env)  # fmt: skip
    try:
        assert world.settings.offline_uri == (f"{world.settings.storage_uri}/offline" if where
                                              else str(tmp_path / "offline"))  # fmt: skip
        producer = make_producer(world.settings)
        send_events(producer, world.settings.topic_bookings, history_events(history.bookings))
        producer.close()
        consumer = world.consumer("--until-idle", "4")
        assert consumer.wait(timeout=400) == 0, world.logs()
    finally:
        world.remove_topics()

    pipeline = FeaturePipeline(Catalogue.from_items(history.items))
    events = timeline(history.bookings)
    columns = ("kind", "event_id", "item_id", "customer_id", "time_us", "price_pence", "rental_days")
    for args in zip(*(events[c].tolist() for c in columns), strict=True):
        pipeline.process(*args)
    pipeline.advance(to_us(now.to_pydatetime()))
    expected = to_table("item_popularity", pipeline.take_rows()["item_popularity"]).to_pandas()

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop_duplicates().sort_values(["item_id", "event_timestamp"]).reset_index(drop=True)

    streamed = read_view(world.settings, "item_popularity")
    pd.testing.assert_frame_equal(rows(streamed), rows(expected))
    files = view_files(world.settings, "item_popularity")
    assert files == [f for f in _stored(world.settings, s3_server, bucket) if f.startswith("item_popularity/")]
    assert len(files) > 1 and all(f.rsplit("/", 1)[1].startswith("items-") for f in files)  # the stage's checkpoints
