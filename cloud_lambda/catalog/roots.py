"""The index root: one catalog index folder per model id, side by side, so cameras on different models are
all served while a fleet moves from one model to the next (docs/scale.md "Several model ids").

    <root>/<model_id>/manifest.json, ids.json, index.<kind>.faiss, metadata.sqlite, ...   (layout.py)

A root is a local folder or ``s3://bucket/prefix``. A folder that itself holds a ``manifest.json`` is the
layout from before several model ids: a root of exactly that one index (it cannot take a second one).
Only sub-folders named like a model id that hold a manifest are indexes. The manifest is the last file
written (``layout.write_catalog``: temp folder + rename; ``sources.upload_folder``: manifest last) and the
first one removed on retire, so a reader never lists a half-written or half-deleted index.

The folder name is never built from a message: the search looks the message's model id up among the listed
names, so an id like ``..`` cannot reach outside the root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from cloud_lambda.catalog.layout import IDS, MANIFEST, METADATA, OWNERS, CatalogError, Manifest, read_manifest
from model.contracts.wire import MODEL_ID_RE
from model.retrieval.head import HEAD_FILE

SEARCH_FILES = (MANIFEST, IDS, OWNERS, METADATA)
"""Files a search container needs besides the index file (not vectors.npy, summary or report)."""


def is_model_folder_name(name: str) -> bool:
    """A model id the wire accepts, and not hidden (temp and retired folders start with a dot)."""
    return bool(MODEL_ID_RE.fullmatch(name)) and not name.startswith(".")


class IndexRoot(ABC):
    """Where the indexes of every live model id are."""

    uri: str
    single: bool = False
    """True for a folder that is itself one index (the layout before several model ids)."""

    @abstractmethod
    def model_ids(self) -> list[str]:
        """Model ids that have a complete index here, sorted."""

    @abstractmethod
    def manifest(self, model_id: str) -> Manifest: ...

    @abstractmethod
    def local_folder(self, model_id: str) -> Path:
        """A local folder holding the files a search needs (S3: downloaded once into the temp dir)."""

    @abstractmethod
    def location(self, model_id: str) -> str:
        """Where the index of ``model_id`` lives or will be written (path or s3:// URI)."""

    @abstractmethod
    def retire(self, model_id: str) -> None:
        """Remove the index of ``model_id`` (manifest first, so readers stop listing it at once)."""

    def version(self, model_id: str) -> str | None:
        """A cheap token that changes whenever the index of ``model_id`` is rewritten; None: this root cannot tell
        (a loaded index is then kept as it is, :mod:`cloud_lambda.search.catalogs`)."""
        return None

    def describe(self) -> list[dict[str, Any]]:
        rows = []
        for model_id in self.model_ids():
            manifest = self.manifest(model_id)
            rows.append(
                {
                    "model_id": model_id,
                    "items": manifest.count,
                    "rows": manifest.rows if manifest.rows is not None else manifest.count,
                    "dim": manifest.dim,
                    "index": manifest.index.kind,
                    "created_at": manifest.created_at,
                    "location": self.location(model_id),
                }
            )
        return rows

    def _known(self, model_id: str) -> None:
        ids = self.model_ids()
        if model_id not in ids:
            raise CatalogError(f"{self.uri} has no index for model {model_id!r}; it has: {', '.join(ids) or 'none'}")


class LocalRoot(IndexRoot):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.uri = str(self.path)
        self.single = (self.path / MANIFEST).is_file()

    def model_ids(self) -> list[str]:
        if self.single:
            return [read_manifest(self.path).model_id]
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if is_model_folder_name(p.name) and (p / MANIFEST).is_file())

    def _folder(self, model_id: str) -> Path:
        self._known(model_id)
        return self.path if self.single else self.path / model_id

    def manifest(self, model_id: str) -> Manifest:
        return read_manifest(self._folder(model_id))

    def local_folder(self, model_id: str) -> Path:
        return self._folder(model_id)

    def version(self, model_id: str) -> str:
        """The manifest's inode, mtime and size: every writer puts a new manifest file in place (a folder swap or
        the manifest written last), so a rewrite changes it. Raises OSError while a swap has the folder away."""
        folder = self.path if self.single else self.path / model_id
        stat = (folder / MANIFEST).stat()
        return f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"

    def location(self, model_id: str) -> str:
        if self.single:
            return str(self.path)
        if not is_model_folder_name(model_id):
            raise CatalogError(f"model id {model_id!r} cannot name an index folder")
        return str(self.path / model_id)

    def retire(self, model_id: str) -> None:
        folder = self._folder(model_id)
        if self.single:
            raise CatalogError(f"{self.path} is a single index, not a root of several: remove it by hand")
        # One rename takes it out of the listing atomically; the files go after.
        aside = self.path / f".retired-{model_id}-{uuid.uuid4().hex[:8]}"
        os.replace(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)


class S3Root(IndexRoot):
    def __init__(self, uri: str, client: Any = None) -> None:
        from cloud_lambda.catalog.sources import S3Source

        self._s3 = S3Source(uri, client)
        self.uri = self._s3.uri
        self.single = self._exists(self._s3.prefix + MANIFEST)

    @property
    def client(self) -> Any:
        return self._s3.client

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self._s3.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def _prefix(self, model_id: str) -> str:
        return self._s3.prefix if self.single else f"{self._s3.prefix}{model_id}/"

    def model_ids(self) -> list[str]:
        if self.single:
            return [self.manifest_at(self._s3.prefix).model_id]
        names = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self._s3.bucket, Prefix=self._s3.prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self._s3.prefix) :].rstrip("/")
                if is_model_folder_name(name):
                    names.append(name)
        # One HEAD per candidate: a folder whose upload has not reached its manifest is not an index yet.
        return sorted(name for name in names if self._exists(f"{self._s3.prefix}{name}/{MANIFEST}"))

    def manifest_at(self, prefix: str) -> Manifest:
        body = self.client.get_object(Bucket=self._s3.bucket, Key=prefix + MANIFEST)["Body"].read()
        try:
            return Manifest.model_validate_json(body)
        except ValueError as exc:
            raise CatalogError(f"s3://{self._s3.bucket}/{prefix}{MANIFEST}: {exc}") from exc

    def manifest(self, model_id: str) -> Manifest:
        self._known(model_id)
        return self.manifest_at(self._prefix(model_id))

    def location(self, model_id: str) -> str:
        if not self.single and not is_model_folder_name(model_id):
            raise CatalogError(f"model id {model_id!r} cannot name an index folder")
        return f"s3://{self._s3.bucket}/{self._prefix(model_id)}"

    def local_folder(self, model_id: str) -> Path:
        manifest = self.manifest(model_id)
        prefix = self._prefix(model_id)
        # created_at in the cache name: a rebuilt index of the same model is a new download, not the stale copy.
        stamp = manifest.created_at.replace(":", "")
        local = Path(tempfile.gettempdir()) / "vs-index" / f"{self._s3.bucket}_{prefix.replace('/', '_')}{stamp}"
        if (local / MANIFEST).exists():
            return local
        return download_index(self.client, self._s3.bucket, prefix, local, manifest)

    def retire(self, model_id: str) -> None:
        self._known(model_id)
        if self.single:
            raise CatalogError(f"{self.uri} is a single index, not a root of several: remove it by hand")
        prefix = self._prefix(model_id)
        # The manifest first: from then on no container lists (or newly loads) this index.
        self.client.delete_object(Bucket=self._s3.bucket, Key=prefix + MANIFEST)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self._s3.bucket, Prefix=prefix)
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self._s3.bucket, Delete={"Objects": keys, "Quiet": True})


def download_index(client: Any, bucket: str, prefix: str, local: Path, manifest: Manifest) -> Path:
    """The files a search needs (not vectors.npy: at 1M items it is 5 GB) into ``local``, renamed into place."""
    from botocore.exceptions import BotoCoreError, ClientError

    from cloud_lambda.catalog.sources import CatalogSourceError

    tmp = local.with_name(f"{local.name}.partial-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        # An adapted catalog's queries go through its head: without head.npz the index cannot be searched.
        for name in (*SEARCH_FILES, manifest.index.file, *((HEAD_FILE,) if manifest.adaptation else ())):
            try:
                client.download_file(bucket, prefix + name, str(tmp / name))
            except ClientError as exc:
                optional = name in (OWNERS, METADATA)
                if optional and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    continue
                raise
    except (BotoCoreError, ClientError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CatalogSourceError(f"cannot download s3://{bucket}/{prefix}: {exc}") from exc
    if local.exists():
        shutil.rmtree(tmp, ignore_errors=True)  # another thread finished first
    else:
        os.replace(tmp, local)
    return local


def open_root(spec: str | Path, client: Any = None) -> IndexRoot:
    text = str(spec)
    return S3Root(text, client) if text.startswith("s3://") else LocalRoot(text)
