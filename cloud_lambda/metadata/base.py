"""Metadata store interface. Every record carries the model id of the vectors it was indexed with."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from model.contracts.errors import VisualSearchError

RESERVED = ("id", "title", "image_url", "model_id")


class MetadataError(VisualSearchError, RuntimeError):
    """The store cannot be opened or read."""


class ItemRecord(BaseModel):
    """One catalog item as the search joins it onto a match."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str = Field(min_length=1, max_length=512, description="Catalog item id (unique).")
    model_id: str = Field(min_length=1, description="Model id of the item's vector.")
    title: str = Field(default="", description="Human-readable title.")
    image_url: str = Field(default="", description="Where the web app loads the item's picture from.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Any further fields from the metadata file.")

    def as_match_fields(self) -> dict[str, Any]:
        """Fields joined onto a match: extra first so the reserved keys always win."""
        return {**self.extra, "title": self.title, "image_url": self.image_url}


class MetadataStore(ABC):
    @abstractmethod
    def put_many(self, records: Iterable[ItemRecord]) -> int:
        """Insert or replace; returns how many were written."""

    @abstractmethod
    def get_many(self, ids: Sequence[str]) -> dict[str, ItemRecord]:
        """Records for ``ids`` (missing ids are absent from the result)."""

    @abstractmethod
    def count(self) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def open_metadata_store(spec: str, index_dir: str | Path | None = None) -> MetadataStore:
    """``sqlite:///path`` | ``dynamodb://table`` | empty → ``<index_dir>/metadata.sqlite`` (read-only use)."""
    if spec.startswith("dynamodb://"):
        from cloud_lambda.metadata.dynamodb_store import DynamoDbStore

        return DynamoDbStore(spec[len("dynamodb://") :])
    from cloud_lambda.metadata.sqlite_store import SqliteStore

    if spec.startswith("sqlite:///"):
        return SqliteStore(Path(spec[len("sqlite:///") - 1 :]))
    if spec:
        raise MetadataError(f"unknown metadata store {spec!r}: use sqlite:///path or dynamodb://table")
    if index_dir is None:
        raise MetadataError("no metadata store given and no index folder to find metadata.sqlite in")
    return SqliteStore(Path(index_dir) / "metadata.sqlite", create=False)
