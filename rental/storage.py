"""Folders on the local disk or under an ``s3://bucket/prefix``, with the few operations the
stores need: write a file whole, list, read, delete.

The offline store, the Feast registry and MLflow's artifacts live under one root: the data
directory, or ``RENTAL_STORAGE_URI`` on S3-compatible object storage. S3 has no rename, but a
PUT is atomic per object: a file is serialised in memory and stored under its final name in
one request (a multipart upload only completes, or is aborted, as a whole), so a reader never
sees half a file. Local files keep their temporary name and rename.

S3 goes through s3fs (fsspec): pyarrow reads through it, and DuckDB reads ``s3://`` paths
through it once registered on a connection (DuckDB's own httpfs extension cannot be loaded
here). Credentials come from the usual AWS chain (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, a profile, an instance role); only the endpoint of an S3-compatible
server is a setting.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import pyarrow as pa

if TYPE_CHECKING:
    import duckdb

S3 = "s3://"


class StorageError(ValueError):
    """A storage URI or endpoint that cannot be used; the message says what is accepted."""


def parse_storage_uri(value: str) -> str:
    """``s3://bucket[/prefix]`` normalised (no trailing slash), or a clear error: the root the
    offline store, the Feast registry and MLflow's artifacts go under."""
    uri = value.strip()
    parts = urlsplit(uri)
    if parts.scheme != "s3":
        raise StorageError(
            f"RENTAL_STORAGE_URI must be an s3://bucket/prefix URI (any S3-compatible server, with "
            f"RENTAL_S3_ENDPOINT_URL), got {value!r}; leave it unset to keep everything under RENTAL_DATA_DIR"
        )
    if "@" in parts.netloc:  # not echoed: it holds a secret
        raise StorageError(
            "RENTAL_STORAGE_URI must hold no credentials: give them as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if not parts.netloc or parts.query or parts.fragment:
        raise StorageError(f"RENTAL_STORAGE_URI {value!r} must be s3://bucket/prefix, with no query")
    prefix = "/".join(p for p in parts.path.split("/") if p)
    if any(p in (".", "..") for p in prefix.split("/")):
        raise StorageError(f"RENTAL_STORAGE_URI {value!r} has a '.' or '..' segment")
    return f"{S3}{parts.netloc}" + (f"/{prefix}" if prefix else "")


def parse_endpoint(value: str) -> str:
    """An S3-compatible server's URL (``http[s]://host[:port]``), checked."""
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StorageError(f"the S3 endpoint must be an http:// or https:// URL, got {value!r}")
    return url


def join(root: str, *parts: str) -> str:
    """A path or URI under ``root``: ``/``-joined for S3, ``os.path.join`` for local paths."""
    if root.startswith(S3):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root, *parts))


def is_s3(uri: str) -> bool:
    return uri.startswith(S3)


def s3_filesystem(endpoint_url: str | None):
    """An s3fs filesystem for the endpoint (None: AWS's own). fsspec keeps one per process and
    thread, so a forked checkpoint writer or a writer thread gets a client of its own."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=endpoint_url) if endpoint_url else s3fs.S3FileSystem()


def export_s3_endpoint(endpoint_url: str | None) -> None:
    """MLflow's and Feast's own S3 clients read the endpoint only from the environment: the
    settings' endpoint is handed to them there (``MLFLOW_S3_ENDPOINT_URL``, ``FEAST_S3_ENDPOINT_URL``)."""
    if endpoint_url:
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = endpoint_url
        os.environ["FEAST_S3_ENDPOINT_URL"] = endpoint_url


class Folder(Protocol):
    """A folder of files, local or on S3; paths are relative to it, ``/``-separated."""

    uri: str

    def uri_of(self, *parts: str) -> str: ...
    def write(self, relpath: str, fill: Callable[[pa.NativeFile | str], None]) -> str: ...
    def files(self, relpath: str = "", pattern: str = "**/*.parquet") -> list[str]: ...
    def folders(self, relpath: str, prefix: str) -> list[str]: ...
    def read_table(self, relpath: str, schema: pa.Schema | None = None) -> pa.Table: ...
    def read_bytes(self, relpath: str) -> bytes | None: ...
    def delete(self, relpaths: Iterable[str]) -> None: ...
    def delete_all(self) -> None: ...
    def attach(self, con: duckdb.DuckDBPyConnection) -> None: ...


def _ordered(relpaths: Iterable[str]) -> list[str]:
    """Sorted as ``pathlib`` sorts paths (part by part: ``date=2024-10/`` before ``date=2024-10-01/``)."""
    return sorted(relpaths, key=lambda p: p.split("/"))


class LocalFolder:
    """A folder on the local disk (or a shared volume): files written under a temporary name and renamed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.uri = str(self.path)

    def uri_of(self, *parts: str) -> str:
        return str(self.path.joinpath(*parts))

    def write(self, relpath: str, fill: Callable[[pa.NativeFile | str], None]) -> str:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            fill(str(tmp))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, target)
        return str(target)

    def files(self, relpath: str = "", pattern: str = "**/*.parquet") -> list[str]:
        folder = self.path / relpath
        return [p.relative_to(self.path).as_posix() for p in sorted(folder.glob(pattern))]

    def folders(self, relpath: str, prefix: str) -> list[str]:
        folder = self.path / relpath
        return [p.relative_to(self.path).as_posix() for p in sorted(folder.glob(f"{prefix}*")) if p.is_dir()]

    def read_table(self, relpath: str, schema: pa.Schema | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(self.path / relpath, schema=schema)

    def read_bytes(self, relpath: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        path = self.path / relpath
        return path.read_bytes() if path.is_file() else None

    def delete(self, relpaths: Iterable[str]) -> None:
        for relpath in relpaths:
            (self.path / relpath).unlink()

    def delete_all(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Local files need nothing: DuckDB reads them itself."""


class S3Folder:
    """A prefix in an S3 bucket: each file one PUT under its final name."""

    def __init__(self, uri: str, endpoint_url: str | None = None):
        self.uri = parse_storage_uri(uri)
        self.endpoint_url = endpoint_url
        self._key = self.uri.removeprefix(S3)  # bucket/prefix, as s3fs names paths

    @property
    def fs(self):
        return s3_filesystem(self.endpoint_url)

    def uri_of(self, *parts: str) -> str:
        return join(self.uri, *parts)

    def _path(self, relpath: str) -> str:
        return join(self._key, relpath) if relpath else self._key

    def write(self, relpath: str, fill: Callable[[pa.NativeFile | str], None]) -> str:
        sink = pa.BufferOutputStream()
        fill(sink)
        self.fs.pipe_file(self._path(relpath), sink.getvalue().to_pybytes())
        return self.uri_of(relpath)

    def _relative(self, paths: Iterable[str]) -> list[str]:
        return _ordered(p.removeprefix(self._key + "/") for p in paths)

    def files(self, relpath: str = "", pattern: str = "**/*.parquet") -> list[str]:
        fs = self.fs
        fs.invalidate_cache()  # another process (a stage, the backfill) may have written since
        return self._relative(fs.glob(join(self._path(relpath), pattern)))

    def folders(self, relpath: str, prefix: str) -> list[str]:
        fs = self.fs
        fs.invalidate_cache()
        try:
            found = fs.ls(self._path(relpath), detail=True, refresh=True)
        except FileNotFoundError:
            return []
        names = [f["name"] for f in found if f["type"] == "directory"]
        return self._relative(n for n in names if n.rsplit("/", 1)[-1].startswith(prefix))

    def read_table(self, relpath: str, schema: pa.Schema | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(self.fs.cat_file(self._path(relpath))), schema=schema)

    def read_bytes(self, relpath: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""
        try:
            return self.fs.cat_file(self._path(relpath))
        except FileNotFoundError:
            return None

    def delete(self, relpaths: Iterable[str]) -> None:
        paths = [self._path(r) for r in relpaths]
        if paths:
            self.fs.rm(paths)

    def delete_all(self) -> None:
        fs = self.fs
        fs.invalidate_cache()
        paths = fs.find(self._key)
        if paths:
            fs.rm(paths)

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        attach_s3(con, self.endpoint_url)


def open_folder(uri: str | Path, endpoint_url: str | None = None) -> LocalFolder | S3Folder:
    """The folder at a local path or an ``s3://`` URI."""
    uri = str(uri)
    return S3Folder(uri, endpoint_url) if is_s3(uri) else LocalFolder(uri)


def attach_s3(con: duckdb.DuckDBPyConnection, endpoint_url: str | None) -> None:
    """DuckDB reads ``s3://`` paths on ``con`` through s3fs (fsspec)."""
    if not con.filesystem_is_registered("s3"):
        con.register_filesystem(s3_filesystem(endpoint_url))
