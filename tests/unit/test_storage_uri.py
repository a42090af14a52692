"""Storage URIs and endpoints from settings and env, and the local folder's file operations."""

from __future__ import annotations

import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from rental.settings import Settings
from rental.storage import (
    LocalFolder,
    S3Folder,
    StorageError,
    export_s3_endpoint,
    join,
    open_folder,
    parse_endpoint,
    parse_storage_uri,
)
from streaming.feature_store.offline import view_glob


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("s3://bucket", "s3://bucket"),
        ("s3://bucket/", "s3://bucket"),
        ("s3://bucket/rental/prod/", "s3://bucket/rental/prod"),
        (" s3://bucket//rental///prod ", "s3://bucket/rental/prod"),
    ],
)
def test_storage_uris_are_normalised(raw, expected):
    assert parse_storage_uri(raw) == expected


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("gs://bucket/x", "must be an s3://bucket/prefix URI"),
        ("/srv/rental", "must be an s3://bucket/prefix URI"),
        ("bucket/prefix", "must be an s3://bucket/prefix URI"),
        ("s3:///prefix", "must be s3://bucket/prefix"),
        ("s3://key:secret@bucket/x", "must hold no credentials: give them as AWS_ACCESS_KEY_ID"),
        ("s3://bucket/x?versionId=1", "with no query"),
        ("s3://bucket/a/../b", "'..'"),
    ],
)
def test_bad_storage_uris_say_what_is_accepted(raw, says):
    with pytest.raises(StorageError, match=re.escape(says)) as raised:
        parse_storage_uri(raw)
    assert "secret" not in str(raised.value)


def test_endpoints_are_http_urls():
    assert parse_endpoint("http://127.0.0.1:9000/") == "http://127.0.0.1:9000"
    assert parse_endpoint("https://minio.internal") == "https://minio.internal"
    for bad in ("127.0.0.1:9000", "ftp://host", "http://"):
        with pytest.raises(StorageError, match="http:// or https:// URL"):
            parse_endpoint(bad)


def test_settings_read_the_root_and_endpoint_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RENTAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RENTAL_STORAGE_URI", "s3://features/rental/")
    monkeypatch.setenv("RENTAL_S3_ENDPOINT_URL", "http://127.0.0.1:9000/")
    s = Settings()
    assert s.storage_uri == "s3://features/rental"
    assert s.s3_endpoint_url == "http://127.0.0.1:9000"
    assert s.offline_uri == "s3://features/rental/offline"
    assert s.feast_registry_path == "s3://features/rental/feast/registry.db"
    assert s.mlflow_artifact_location == "s3://features/rental/mlflow/artifacts"
    assert view_glob(s, "item_popularity") == "s3://features/rental/offline/item_popularity/**/*.parquet"
    assert isinstance(open_folder(s.offline_uri, s.s3_endpoint_url), S3Folder)
    # a tracking server keeps its own artifact store (it proxies them); a database backend uses the root
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert Settings().mlflow_artifact_location is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://mlflow@db/mlflow")
    assert Settings().mlflow_artifact_location == "s3://features/rental/mlflow/artifacts"


def test_without_a_root_everything_stays_under_the_data_dir(monkeypatch, tmp_path):
    for name in ("RENTAL_STORAGE_URI", "RENTAL_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.storage_uri is None and s.s3_endpoint_url is None
    assert s.offline_uri == str(tmp_path / "offline") == str(s.offline_dir)
    assert s.feast_registry_path == str(tmp_path / "feast" / "registry.db")
    assert s.mlflow_artifact_location == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert view_glob(s, "item_popularity") == str(tmp_path / "offline" / "item_popularity" / "**" / "*.parquet")
    assert isinstance(open_folder(s.offline_uri), LocalFolder)
    # a tracking server chooses the artifact location itself; an empty variable is no root
    assert Settings(data_dir=tmp_path, MLFLOW_TRACKING_URI="http://mlflow:5000").mlflow_artifact_location is None
    assert Settings(data_dir=tmp_path, storage_uri=" ").storage_uri is None


def test_settings_refuse_a_bad_root_naming_the_variable(tmp_path):
    with pytest.raises(ValidationError, match="RENTAL_STORAGE_URI must be an s3://bucket/prefix URI"):
        Settings(data_dir=tmp_path, storage_uri="gs://bucket/x")
    with pytest.raises(ValidationError, match="S3 endpoint must be an http"):
        Settings(data_dir=tmp_path, s3_endpoint_url="minio:9000")


def test_the_endpoint_reaches_the_clients_that_read_only_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://old:1")
    monkeypatch.delenv("FEAST_S3_ENDPOINT_URL", raising=False)
    export_s3_endpoint(Settings(data_dir=tmp_path, s3_endpoint_url=None).s3_endpoint_url)  # nothing to hand over
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://old:1" and "FEAST_S3_ENDPOINT_URL" not in os.environ
    export_s3_endpoint(Settings(data_dir=tmp_path, s3_endpoint_url="http://127.0.0.1:9000/").s3_endpoint_url)
    assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == os.environ["FEAST_S3_ENDPOINT_URL"] == "http://127.0.0.1:9000"


def test_join_keeps_s3_uris_slash_separated():
    assert join("s3://b/p", "offline", "item_popularity") == "s3://b/p/offline/item_popularity"
    assert join("s3://b/p/", "/offline/", "x.parquet") == "s3://b/p/offline/x.parquet"
    assert join("/data", "offline", "x") == "/data/offline/x"


def test_a_local_folder_writes_whole_files_lists_in_path_order_and_deletes(tmp_path):
    folder = LocalFolder(tmp_path / "store")
    table = pa.table({"a": [1, 2, 3]})
    for rel in ("v/date=2024-10-01/b.parquet", "v/date=2024-10/a.parquet", "v/date=2024-10-01/a.parquet"):
        assert folder.write(rel, lambda sink: pq.write_table(table, sink)) == str(tmp_path / "store" / rel)
    # pathlib's order, part by part: the month folder before the day folders that share its prefix
    assert folder.files("v") == [
        "v/date=2024-10/a.parquet",
        "v/date=2024-10-01/a.parquet",
        "v/date=2024-10-01/b.parquet",
    ]
    assert folder.folders("v", "date=") == ["v/date=2024-10", "v/date=2024-10-01"]
    assert folder.files("v/date=2024-10-01", "*.parquet") == [
        "v/date=2024-10-01/a.parquet",
        "v/date=2024-10-01/b.parquet",
    ]
    assert folder.read_table("v/date=2024-10/a.parquet").equals(table)
    assert folder.read_bytes("v/date=2024-10/a.parquet") == (tmp_path / "store/v/date=2024-10/a.parquet").read_bytes()
    assert folder.read_bytes("v/none.parquet") is None and folder.read_bytes("v") is None

    def broken(sink):
        pq.write_table(table, sink)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        folder.write("v/date=2024-10/c.parquet", broken)
    assert sorted(p.name for p in (tmp_path / "store" / "v" / "date=2024-10").iterdir()) == ["a.parquet"]  # no tmp left

    folder.delete(["v/date=2024-10-01/a.parquet"])
    assert folder.files("v") == ["v/date=2024-10/a.parquet", "v/date=2024-10-01/b.parquet"]
    assert folder.files("missing") == [] and folder.folders("missing", "date=") == []
    folder.delete_all()
    assert not (tmp_path / "store").exists()
