"""Redis match lists (docs/architecture.md "Match record", "Redis keys"): newest first, capped, idempotent on (device, seq).

Keys: ``visualsearch:matches:{device}`` (list, LPUSH + LTRIM 0 N-1), ``visualsearch:seen:{device}:{seq}``
(SET NX EX, atomically with the push: one Lua script), ``visualsearch:status:{device}``, ``visualsearch:devices``
(sorted set device → last-seen epoch seconds). Records are JSON, never reprs; an empty list reads as
"no matches yet".
"""

from __future__ import annotations

import json
from typing import Any

import redis
from pydantic import SecretStr

from edge_component.wire import bounded_json

PREFIX = "visualsearch"
MAX_STORED_BYTES = 2 * 1024 * 1024
"""Largest stored record or status read back (ours are far smaller; older versions wrote up to ~1 MB)."""
DEVICES_KEY = f"{PREFIX}:devices"


def matches_key(device_id: str) -> str:
    return f"{PREFIX}:matches:{device_id}"


def seen_key(device_id: str, seq: int) -> str:
    return f"{PREFIX}:seen:{device_id}:{seq}"


def status_key(device_id: str) -> str:
    return f"{PREFIX}:status:{device_id}"


PUSH_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]))
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
  return 1
end
return 0
"""
"""KEYS: seen marker, match list, devices zset. ARGV: ttl, record JSON, cap-1, last-seen, device id."""


class MatchStoreUnavailable(RuntimeError):
    """Redis could not be reached or refused the write: the invocation must fail so the event is retried."""


def connect(url: str | SecretStr, timeout_s: float = 2.0) -> redis.Redis:
    """A client for ``url``; the URL (and its AUTH token) is unwrapped only here, never logged."""
    return redis.Redis.from_url(
        url.get_secret_value() if isinstance(url, SecretStr) else url,
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
        # Registered once; redis-py sends EVALSHA and falls back to EVAL after a server restart.
        self._push_script = client.register_script(PUSH_ONCE)

    def push(self, record: dict[str, Any]) -> bool:
        """Store ``record`` once per (device, seq). Returns False for a replay (nothing written).

        One server-side script = one round trip, executed atomically like MULTI/EXEC, and unlike MULTI it can
        make the push conditional on the SET NX (a WATCH/MULTI version needs three round trips).
        """
        device_id, seq = record["device_id"], int(record["seq"])
        payload = json.dumps(record, separators=(",", ":"), allow_nan=False)
        keys = [seen_key(device_id, seq), matches_key(device_id), DEVICES_KEY]
        args = [self.seen_ttl_s, payload, self.cap - 1, float(record.get("searched_at") or 0.0), device_id]
        try:
            return bool(self._push_script(keys=keys, args=args))
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
        return [record for record in map(_parsed, raw) if record is not None]

    def devices(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Devices by last seen, newest first: ``{device_id, last_seen, status}`` from ``offset``."""
        return self.page(offset, limit, with_records=False)[0]

    def page(self, offset: int, limit: int, with_records: bool = True) -> tuple[list[dict[str, Any]], int]:
        """One page of devices (newest first) with their status and, with ``with_records``, their latest
        match record; and the number of devices in all. Three round trips whatever the page size."""
        try:
            total = int(self.client.zcard(DEVICES_KEY))
            seen: list[tuple[Any, float]] = list(
                self.client.zrevrange(DEVICES_KEY, offset, offset + limit - 1, withscores=True)  # type: ignore[arg-type]
            )
            ids = [d.decode() if isinstance(d, bytes) else str(d) for d, _ in seen]
            statuses = self.client.mget([status_key(d) for d in ids]) if ids else []
            latest: list[Any] = [None] * len(ids)
            if with_records and ids:
                with self.client.pipeline(transaction=False) as pipe:
                    for device_id in ids:
                        pipe.lindex(matches_key(device_id), 0)
                    latest = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise MatchStoreUnavailable(f"redis read failed: {exc}") from exc
        out = []
        for (_, score), device_id, status, record in zip(seen, ids, statuses, latest, strict=True):
            entry: dict[str, Any] = {"device_id": device_id, "last_seen": float(score), "status": _parsed(status)}
            if with_records:
                entry["record"] = _parsed(record)
            out.append(entry)
        return out, total


def _parsed(raw: bytes | str | None) -> Any:
    """A stored document through the one bounded reader: a foreign value in our key, or one written before a
    rule existed (980 levels deep, NaN), reads as absent instead of breaking every later response."""
    if raw is None:
        return None
    try:
        return bounded_json.loads(raw, max_bytes=MAX_STORED_BYTES, what="stored document")
    except bounded_json.JsonRejected:
        return None
