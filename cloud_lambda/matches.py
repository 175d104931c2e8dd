"""Redis match lists (design.md "Match record"): newest first, capped, idempotent on (device, seq).

Keys: ``visualsearch:matches:{device}`` (list, LPUSH + LTRIM 0 N-1), ``visualsearch:seen:{device}:{seq}``
(SET NX EX, in the same MULTI as the push), ``visualsearch:status:{device}``, ``visualsearch:devices``
(sorted set device → last-seen epoch seconds). Records are JSON, never reprs; an empty list reads as
"no matches yet".
"""

from __future__ import annotations

import json
from typing import Any

import redis

PREFIX = "visualsearch"
DEVICES_KEY = f"{PREFIX}:devices"


def matches_key(device_id: str) -> str:
    return f"{PREFIX}:matches:{device_id}"


def seen_key(device_id: str, seq: int) -> str:
    return f"{PREFIX}:seen:{device_id}:{seq}"


def status_key(device_id: str) -> str:
    return f"{PREFIX}:status:{device_id}"


class MatchStoreUnavailable(RuntimeError):
    """Redis could not be reached or refused the write: the invocation must fail so the event is retried."""


def connect(url: str, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        decode_responses=False,
    )


class MatchStore:
    def __init__(self, client: redis.Redis, cap: int = 100, seen_ttl_s: int = 86_400) -> None:
        if cap < 1:
            raise ValueError(f"match list cap must be >= 1, got {cap}")
        self.client = client
        self.cap = cap
        self.seen_ttl_s = seen_ttl_s

    def push(self, record: dict[str, Any]) -> bool:
        """Store ``record`` once per (device, seq). Returns False for a replay (nothing written)."""
        device_id, seq = record["device_id"], int(record["seq"])
        payload = json.dumps(record, separators=(",", ":"), allow_nan=False)
        seen, key = seen_key(device_id, seq), matches_key(device_id)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                for _ in range(16):
                    try:
                        # Optimistic lock: if another invocation marks this seq between our check and EXEC,
                        # EXEC aborts and the retry sees the marker.
                        pipe.watch(seen)
                        if pipe.exists(seen):
                            pipe.unwatch()
                            return False
                        pipe.multi()
                        pipe.set(seen, b"1", nx=True, ex=self.seen_ttl_s)
                        pipe.lpush(key, payload)
                        pipe.ltrim(key, 0, self.cap - 1)
                        pipe.zadd(DEVICES_KEY, {device_id: float(record.get("searched_at") or 0.0)})
                        pipe.execute()
                        return True
                    except redis.WatchError:
                        continue
                raise MatchStoreUnavailable(f"could not store {device_id}/{seq}: too much contention")
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            raise MatchStoreUnavailable(f"redis write failed for {device_id}/{seq}: {exc}") from exc

    def put_status(self, device_id: str, status_json: str, seen_at: float) -> None:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.set(status_key(device_id), status_json)
                pipe.zadd(DEVICES_KEY, {device_id: seen_at})
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            raise MatchStoreUnavailable(f"redis status write failed for {device_id}: {exc}") from exc

    def latest(self, device_id: str, n: int = 1) -> list[dict[str, Any]]:
        """Newest first; [] when the device has no records yet."""
        try:
            raw = self.client.lrange(matches_key(device_id), 0, max(0, n - 1))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise MatchStoreUnavailable(f"redis read failed: {exc}") from exc
        out = []
        for item in raw:
            try:
                out.append(json.loads(item))
            except (ValueError, TypeError):
                continue  # a foreign value in our key must not break the reader
        return out

    def devices(self, limit: int = 1000) -> list[dict[str, Any]]:
        try:
            seen: list[tuple[Any, float]] = list(
                self.client.zrevrange(DEVICES_KEY, 0, limit - 1, withscores=True)  # type: ignore[arg-type]
            )
            ids = [d.decode() if isinstance(d, bytes) else str(d) for d, _ in seen]
            statuses = self.client.mget([status_key(d) for d in ids]) if ids else []
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise MatchStoreUnavailable(f"redis read failed: {exc}") from exc
        out = []
        for (_, score), device_id, status in zip(seen, ids, statuses, strict=True):
            parsed = None
            if status is not None:
                try:
                    parsed = json.loads(status)
                except ValueError:
                    parsed = None
            out.append({"device_id": device_id, "last_seen": float(score), "status": parsed})
        return out
