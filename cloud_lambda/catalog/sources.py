"""Where catalog images come from: a local folder or ``s3://bucket/prefix`` (one class each, one interface).

Sources are pickled into the decode worker processes, so they carry only their address; the S3 client is
created lazily in each process.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from model.contracts.errors import VisualSearchError

# Metadata and docs that may sit beside the images; anything else is a candidate (and is validated).
SKIP_SUFFIXES = frozenset({".jsonl", ".csv", ".json", ".md"})


class CatalogSourceError(VisualSearchError, RuntimeError):
    """The source cannot be listed or an object cannot be read."""


@dataclass(frozen=True)
class SourceItem:
    key: str
    """Path relative to the source root, with ``/`` separators."""
    size: int


class CatalogSource(ABC):
    uri: str

    @abstractmethod
    def list(self) -> list[SourceItem]:
        """All candidate files, sorted by key."""

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def url_for(self, key: str) -> str:
        """The default ``image_url`` of an item (overridden by the metadata file or --image-base-url)."""


def _wanted(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() not in SKIP_SUFFIXES


class LocalFolderSource(CatalogSource):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise CatalogSourceError(f"catalog source {root} is not a folder")
        self.uri = str(self.root)

    def list(self) -> list[SourceItem]:
        items = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if _wanted(name):
                    path = Path(dirpath) / name
                    if path.is_file():
                        items.append(SourceItem(path.relative_to(self.root).as_posix(), path.stat().st_size))
        return sorted(items, key=lambda item: item.key)

    def read(self, key: str) -> bytes:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise CatalogSourceError(f"key {key!r} escapes the source folder")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CatalogSourceError(f"cannot read {path}: {exc}") from exc

    def url_for(self, key: str) -> str:
        # Where `stack up --catalog-dir` serves the folder; a file:// URL would show the server's paths to every
        # browser (and no browser loads it from an http page anyway).
        return "/catalog/" + quote(key)


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise CatalogSourceError(f"{uri!r} is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise CatalogSourceError(f"{uri!r} has no bucket")
    return bucket, prefix


class S3Source(CatalogSource):
    """``s3://bucket/prefix``: ListObjectsV2 (paginated) and GetObject, nothing else."""

    def __init__(self, uri: str, client: Any = None) -> None:
        self.bucket, prefix = split_s3_uri(uri)
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self._client = client

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None  # boto3 clients do not pickle; each worker makes its own
        return state

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def list(self) -> list[SourceItem]:
        from botocore.exceptions import BotoCoreError, ClientError

        items = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix) :]
                    if key and not key.endswith("/") and _wanted(key.rsplit("/", 1)[-1]):
                        items.append(SourceItem(key, int(obj["Size"])))
        except (BotoCoreError, ClientError) as exc:
            raise CatalogSourceError(f"cannot list {self.uri}: {exc}") from exc
        return sorted(items, key=lambda item: item.key)

    def read(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise CatalogSourceError(f"cannot read s3://{self.bucket}/{self.prefix}{key}: {exc}") from exc
        return body

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"


def open_source(spec: str, client: Any = None) -> CatalogSource:
    if spec.startswith("s3://"):
        return S3Source(spec, client)
    return LocalFolderSource(spec)


def download_prefix(uri: str, local: Path, client: Any = None) -> Path:
    """Copy every object under ``uri`` into ``local`` (the Lambda loads its index this way, once)."""
    source = S3Source(uri, client)
    tmp = local.with_name(local.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        for page in source.client.get_paginator("list_objects_v2").paginate(Bucket=source.bucket, Prefix=source.prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(source.prefix) :]
                if not rel or rel.endswith("/") or "/" in rel:
                    continue  # the index folder is flat; shard subfolders are not part of it
                source.client.download_file(source.bucket, obj["Key"], str(tmp / rel))
    except (BotoCoreError, ClientError) as exc:
        raise CatalogSourceError(f"cannot download {uri}: {exc}") from exc
    os.replace(tmp, local)
    return local


def upload_folder(local: Path, uri: str, client: Any = None) -> int:
    """Upload the files of ``local`` under ``uri``; the manifest last, so readers never see a partial index."""
    target = S3Source(uri, client)
    files = sorted(p for p in Path(local).iterdir() if p.is_file())
    files.sort(key=lambda p: p.name == "manifest.json")
    for path in files:
        target.client.upload_file(str(path), target.bucket, target.prefix + path.name)
    return len(files)


def local_model(path: str, client: Any = None) -> str:
    """An ``s3://bucket/key.onnx`` model and its sidecar, fetched once into the temp dir; a local path as is."""
    if not path.startswith("s3://"):
        return path
    import tempfile

    from model.contracts.model_file import sidecar_path_for

    bucket, key = split_s3_uri(path)
    local = Path(tempfile.gettempdir()) / "vs-model" / key.replace("/", "_")
    if not local.exists():
        if client is None:
            import boto3

            client = boto3.client("s3")
        local.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, sidecar_path_for(key), sidecar_path_for(str(local)))
        client.download_file(bucket, key, str(local) + ".part")
        os.replace(str(local) + ".part", local)
    return str(local)


def local_file(path: str, client: Any = None) -> Path:
    """An ``s3://bucket/key`` file (an items .jsonl/.csv) fetched into the temp dir; a local path as is.

    The AWS Batch job passes its ``metadata`` parameter this way: the container has no catalog files of its own.
    The file name keeps the key's extension, which decides how it is parsed.
    """
    if not path.startswith("s3://"):
        return Path(path)
    import tempfile

    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3_uri(path)
    if not key or key.endswith("/"):
        raise CatalogSourceError(f"{path!r} names no object")
    if client is None:
        import boto3

        client = boto3.client("s3")
    local = Path(tempfile.mkdtemp(prefix="vs-file-")) / Path(key).name
    try:
        client.download_file(bucket, key, str(local))
    except (BotoCoreError, ClientError) as exc:
        raise CatalogSourceError(f"cannot download {path}: {exc}") from exc
    return local


def shard_prefixes(uri: str, client: Any = None) -> list[str]:
    """The ``shard-*`` sub-prefixes under ``uri`` (where AWS Batch array children upload their shards)."""
    source = S3Source(uri, client)
    found = []
    for page in source.client.get_paginator("list_objects_v2").paginate(
        Bucket=source.bucket, Prefix=source.prefix, Delimiter="/"
    ):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(source.prefix) :].rstrip("/")
            if name.startswith("shard-"):
                found.append(f"s3://{source.bucket}/{common['Prefix']}")
    return sorted(found)
