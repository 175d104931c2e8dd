"""Redis match lists (docs/architecture.md "Match record", "Redis keys"): newest first, capped, idempotent on (device, seq).

Keys: ``visualsearch:matches:{device}`` (list, LPUSH + LTRIM 0 N-1), ``visualsearch:seen:{device}:{seq}``
(SET NX EX, atomically with the push: one Lua script), ``visualsearch:status:{device}``, ``visualsearch:devices``
(sorted set device → last-seen epoch seconds). A device's keys expire ``device_ttl_s`` after it was last heard
from, and the registry forgets it then (and keeps at most ``max_devices``, the most recently seen). Records are JSON, never reprs; an empty list reads as
"no matches yet".
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from pydantic import SecretStr

from model.contracts import bounded_json
from model.contracts.errors import Rejected, VisualSearchError

PREFIX = "visualsearch"
MAX_STORED_BYTES = 2 * 1024 * 1024
"""Largest stored record or status read back (ours are far smaller; older versions wrote up to ~1 MB)."""
DEVICES_KEY = f"{PREFIX}:devices"
WRITE_PROBE = "#!lua\nreturn 1"
"""A script that may write (no ``no-writes`` flag) and writes nothing: Redis 7 refuses it before it runs when it
cannot take writes (OOM under ``maxmemory``, a read-only replica), so health can ask without changing data."""


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
  redis.call('EXPIRE', KEYS[2], ARGV[6])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[7])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[8]) + 1))
  return 1
end
return 0
"""
"""KEYS: seen marker, match list, devices zset. ARGV: seen ttl, record JSON, cap-1, last-seen, device id,
device ttl, oldest last-seen kept, most devices kept. Redis refuses the script at its first write (SET NX)
when it cannot take writes (OOM, READONLY), so a refusal never leaves a marker without its record."""


class MatchStoreUnavailable(VisualSearchError, RuntimeError):
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
    def __init__(
        self,
        client: redis.Redis,
        cap: int = 100,
        seen_ttl_s: int = 86_400,
        device_ttl_s: int = 7 * 86_400,
        max_devices: int = 100_000,
    ) -> None:
        if cap < 1:
            raise ValueError(f"match list cap must be >= 1, got {cap}")
        if device_ttl_s < 1 or max_devices < 1:
            raise ValueError(f"device_ttl_s and max_devices must be >= 1, got {device_ttl_s}, {max_devices}")
        self.client = client
        self.cap = cap
        self.seen_ttl_s = seen_ttl_s
        self.device_ttl_s = device_ttl_s
        self.max_devices = max_devices
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
        seen_at = float(record.get("searched_at") or 0.0)
        args = [
            *(self.seen_ttl_s, payload, self.cap - 1, seen_at, device_id),
            *(self.device_ttl_s, self._oldest_kept(), self.max_devices),
        ]
        try:
            return bool(self._push_script(keys=keys, args=args))
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            raise MatchStoreUnavailable(f"redis write failed for {device_id}/{seq}: {exc}") from exc

    def put_status(self, device_id: str, status_json: str, seen_at: float) -> None:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.set(status_key(device_id), status_json, ex=self.device_ttl_s)
                pipe.zadd(DEVICES_KEY, {device_id: seen_at})
                pipe.zremrangebyscore(DEVICES_KEY, "-inf", f"({self._oldest_kept()}")
                pipe.zremrangebyrank(DEVICES_KEY, 0, -(self.max_devices + 1))
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            raise MatchStoreUnavailable(f"redis status write failed for {device_id}: {exc}") from exc

    def _oldest_kept(self) -> float:
        """Devices last seen before this are forgotten (their keys expire at the same moment)."""
        return time.time() - self.device_ttl_s

    def state(self) -> str:
        """``ok``, ``down`` (unreachable), or ``refusing_writes`` (answers, but a write is refused: ``maxmemory``
        with noeviction, a read-only replica, a failed RDB save): a PING alone would call the last one healthy."""
        try:
            self.client.ping()
        except redis.RedisError:
            return "down"
        try:
            self.client.eval(WRITE_PROBE, 0)
        except redis.ResponseError:
            return "refusing_writes"
        except redis.RedisError:
            return "down"
        return "ok"

    def latest(self, device_id: str, n: int = 1) -> list[dict[str, Any]]:
        """Newest first; [] when the device has no records yet."""
        try:
            raw = self.client.lrange(matches_key(device_id), 0, max(0, n - 1))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise MatchStoreUnavailable(f"redis read failed: {exc}") from exc
        return [record for record in map(load_stored, raw) if record is not None]

    def devices(self, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Devices by last seen, newest first: ``{device_id, last_seen, status}`` from ``offset``."""
        return self.page(offset, limit, with_records=False)[0]

    def page(self, offset: int, limit: int, with_records: bool = True) -> tuple[list[dict[str, Any]], int]:
        """One page of devices (newest first) with their status and, with ``with_records``, their latest
        match record; and the number of devices in all. Three round trips whatever the page size."""
        try:
            oldest = self._oldest_kept()  # silent devices not yet removed by a write are not listed either
            total = int(self.client.zcount(DEVICES_KEY, oldest, "+inf"))
            seen: list[tuple[Any, float]] = list(
                self.client.zrevrangebyscore(  # type: ignore[arg-type]
                    DEVICES_KEY, "+inf", oldest, start=offset, num=limit, withscores=True
                )
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
            entry: dict[str, Any] = {"device_id": device_id, "last_seen": float(score), "status": load_stored(status)}
            if with_records:
                entry["record"] = load_stored(record)
            out.append(entry)
        return out, total


def load_stored(raw: bytes | str | None) -> Any:
    """A stored document through the one bounded reader: a foreign value in our key, or one written before a
    rule existed (980 levels deep, NaN), reads as absent instead of breaking every later response."""
    if raw is None:
        return None
    try:
        return bounded_json.loads(raw, max_bytes=MAX_STORED_BYTES)
    except Rejected:  # its message is not needed: the value reads as absent
        return None
