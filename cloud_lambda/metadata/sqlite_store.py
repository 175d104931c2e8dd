"""SQLite metadata store: the embedded default, shipped inside the catalog index folder."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from cloud_lambda.metadata.base import ItemRecord, MetadataError, MetadataStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    image_url TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}'
)
"""
# SQLite's default limit on host parameters is 999 on older builds.
CHUNK = 500


class SqliteStore(MetadataStore):
    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise MetadataError(f"metadata store {self.path} does not exist (was the catalog indexed?)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the handler's threads, serialized by a lock (reads are microseconds).
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute(SCHEMA)
            self._conn.commit()

    def put_many(self, records: Iterable[ItemRecord]) -> int:
        rows = [(r.id, r.model_id, r.title, r.image_url, json.dumps(r.extra, sort_keys=True)) for r in records]
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)", rows)
            self._conn.commit()
        return len(rows)

    def get_many(self, ids: Sequence[str]) -> dict[str, ItemRecord]:
        out: dict[str, ItemRecord] = {}
        unique = list(dict.fromkeys(ids))
        with self._lock:
            for start in range(0, len(unique), CHUNK):
                chunk = unique[start : start + CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT id, model_id, title, image_url, extra FROM items WHERE id IN ({marks})"
                for item_id, model_id, title, image_url, extra in self._conn.execute(query, chunk):
                    out[item_id] = ItemRecord(
                        id=item_id, model_id=model_id, title=title, image_url=image_url, extra=json.loads(extra)
                    )
        return out

    def iter_all(self) -> Iterable[ItemRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT id, model_id, title, image_url, extra FROM items ORDER BY id").fetchall()
        for item_id, model_id, title, image_url, extra in rows:
            yield ItemRecord(id=item_id, model_id=model_id, title=title, image_url=image_url, extra=json.loads(extra))

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
