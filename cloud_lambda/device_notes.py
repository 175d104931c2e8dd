"""What the web app shows of a camera besides its newest match: what it saw, what it matched lately, and why
its messages are refused.

Keys (docs/architecture.md, "Redis keys"):

- ``visualsearch:thumbnail:{device}`` — hash ``seq``, ``ts``, ``jpeg``: the newest query thumbnail, expiring
  after :data:`THUMBNAIL_TTL_S` so a camera that stopped sending them does not show an old picture forever.
- ``visualsearch:rejected:{device}`` — JSON: the last refusal of one of the device's messages (reason, the
  search's message, what to do), expiring after :data:`REJECTION_TTL_S`. It is the one thing a refused
  message writes: no record, no idempotency marker, no status.

The history is read from the match list itself (the newest records), summarized to what a card shows.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from cloud_lambda.matches import MatchStoreUnavailable, load_stored, matches_key

PREFIX = "visualsearch"
THUMBNAIL_TTL_S = 3600
REJECTION_TTL_S = 3600
HISTORY_MAX = 20
NOTE_EVERY_S = 1.0
"""A device whose every message is refused gets its note rewritten at most this often (per container)."""

HINTS = {
    "no_index_for_model": "no catalog index was built with the camera's model: re-index the catalog with it into"
    " the index root (catalog index --root), or deploy to the camera a model the root has (the message names them)",
    "wrong_dim": "the camera's vectors have another size than the index's: deploy the index's model to the camera",
    "device_mismatch": "the message's device_id is not the thing name in its topic: set device_id to the thing "
    "name (AWS_IOT_THING_NAME) — the search refuses it as spoofed",
    "unknown_version": "the camera speaks another wire version: update the edge component or the cloud side",
}
DEFAULT_HINT = "the camera's messages are malformed: check the edge component's version and its log"


def thumbnail_key(device_id: str) -> str:
    return f"{PREFIX}:thumbnail:{device_id}"


def rejected_key(device_id: str) -> str:
    return f"{PREFIX}:rejected:{device_id}"


def history_entry(record: dict[str, Any]) -> dict[str, Any]:
    """A match record reduced to one line of a card: when, and the best hit (or none)."""
    matches = record.get("matches") or []
    top = matches[0] if matches and isinstance(matches[0], dict) else None
    return {
        "seq": record.get("seq"),
        "ts": record.get("ts"),
        "searched_at": record.get("searched_at"),
        "top": {k: top.get(k) for k in ("id", "title", "score")} if top else None,
    }


class DeviceNotes:
    """Thumbnails, refusal notes and history summaries over the match store's Redis client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._noted: dict[str, tuple[str, float]] = {}

    # --- writes (search Lambda / rule bridge) --------------------------------------------------------
    def put_thumbnail(self, device_id: str, seq: int, ts: float, jpeg: bytes) -> None:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(thumbnail_key(device_id), mapping={"seq": seq, "ts": ts, "jpeg": jpeg})
                pipe.expire(thumbnail_key(device_id), THUMBNAIL_TTL_S)
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            raise MatchStoreUnavailable(f"redis thumbnail write failed for {device_id}: {exc}") from exc

    def note_rejection(self, device_id: str, reason: str, message: str, seq: int | None) -> bool:
        """Record why ``device_id``'s message was refused; False when throttled. Raises MatchStoreUnavailable."""
        now = time.time()
        last = self._noted.get(device_id)
        if last is not None and last[0] == reason and now - last[1] < NOTE_EVERY_S:
            return False
        note: dict[str, Any] = {"reason": reason, "message": message[:300], "hint": HINTS.get(reason, DEFAULT_HINT)}
        note.update(seq=seq, at=round(now, 3))
        try:
            self.client.set(rejected_key(device_id), json.dumps(note, separators=(",", ":")), ex=REJECTION_TTL_S)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            raise MatchStoreUnavailable(f"redis rejection note failed for {device_id}: {exc}") from exc
        if len(self._noted) > 10_000:
            self._noted.clear()
        self._noted[device_id] = (reason, now)
        return True

    # --- reads (API) ---------------------------------------------------------------------------------
    def thumbnail(self, device_id: str) -> tuple[bytes, int, float] | None:
        try:
            seq, ts, jpeg = self.client.hmget(thumbnail_key(device_id), ["seq", "ts", "jpeg"])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise MatchStoreUnavailable(f"redis read failed: {exc}") from exc
        if jpeg is None or seq is None or ts is None:
            return None
        return (jpeg if isinstance(jpeg, bytes) else str(jpeg).encode("latin-1")), int(seq), float(ts)

    def enrich(self, entries: list[dict[str, Any]], history: int = 0) -> None:
        """Add ``thumbnail`` ({seq, ts} or None), ``rejection`` and, with ``history``, the newest ``history``
        records summarized, to each page entry: one pipelined round trip for the whole page."""
        history = max(0, min(history, HISTORY_MAX))
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for entry in entries:
                    device_id = entry["device_id"]
                    pipe.hmget(thumbnail_key(device_id), ["seq", "ts"])
                    pipe.get(rejected_key(device_id))
                    if history:
                        pipe.lrange(matches_key(device_id), 0, history - 1)
                replies = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise MatchStoreUnavailable(f"redis read failed: {exc}") from exc
        step = 3 if history else 2
        for index, entry in enumerate(entries):
            (seq, ts), note, *records = replies[index * step : index * step + step]
            entry["thumbnail"] = {"seq": int(seq), "ts": float(ts)} if seq is not None and ts is not None else None
            entry["rejection"] = load_stored(note)
            if history:
                entry["history"] = [history_entry(r) for r in map(load_stored, records[0]) if isinstance(r, dict)]
