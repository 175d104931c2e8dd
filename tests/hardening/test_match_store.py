"""The match store's promises on a real redis-server, one by one (a mutation pass once found 56 % of one-line
mutants of ``matches.py`` surviving; nothing checked that a device sending only features is listed, or the exact
cap)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from cloud_lambda.matches import (
    DEVICES_KEY,
    MatchStore,
    MatchStoreUnavailable,
    connect,
    matches_key,
    seen_key,
    status_key,
)
from cloud_lambda.settings import CloudSettings
from simulator.stack.processes import RedisProcess


@pytest.fixture
def client(redis_server: RedisProcess) -> Iterator[redis.Redis]:
    yield connect(redis_server.url, timeout_s=1.0)


def record(device: str, seq: int, searched_at: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"device_id": device, "seq": seq, "searched_at": searched_at or time.time(), "matches": [], **extra}


def test_a_record_is_stored_once_per_device_and_seq(client: redis.Redis) -> None:
    store = MatchStore(client, cap=10, seen_ttl_s=500)
    assert store.push(record("cam-1", 1, title="x")) is True
    assert store.push(record("cam-1", 1, title="other")) is False
    assert store.push(record("cam-2", 1)) is True  # another device's seq 1 is another record
    assert [r["title"] for r in store.latest("cam-1", 10)] == ["x"]
    assert 0 < client.ttl(seen_key("cam-1", 1)) <= 500
    assert client.get(seen_key("cam-1", 1)) == b"1"


@pytest.mark.parametrize("cap", [1, 3])
def test_the_list_keeps_exactly_cap_records_newest_first(client: redis.Redis, cap: int) -> None:
    store = MatchStore(client, cap=cap)
    for seq in range(1, 6):
        store.push(record("cam-1", seq))
    assert client.llen(matches_key("cam-1")) == cap
    assert [r["seq"] for r in store.latest("cam-1", 10)] == list(range(5, 5 - cap, -1))
    assert [r["seq"] for r in store.latest("cam-1", 1)] == [5]


def test_latest_returns_n_records(client: redis.Redis) -> None:
    store = MatchStore(client, cap=10)
    for seq in range(1, 5):
        store.push(record("cam-1", seq))
    assert [r["seq"] for r in store.latest("cam-1", 2)] == [4, 3]
    assert [r["seq"] for r in store.latest("cam-1")] == [4]
    assert store.latest("never-seen", 5) == []


@pytest.mark.parametrize("kwargs", [{"cap": 0}, {"cap": -1}, {"device_ttl_s": 0}, {"max_devices": 0}])
def test_bounds_that_would_make_a_key_unbounded_are_refused(client: redis.Redis, kwargs: dict[str, int]) -> None:
    """LTRIM 0 -1 keeps everything: a cap of 0 would make the list unbounded."""
    with pytest.raises(ValueError):
        MatchStore(client, **kwargs)


def test_a_device_that_only_sends_features_is_listed(client: redis.Redis) -> None:
    store = MatchStore(client)
    now = time.time()
    store.push(record("cam-quiet", 1, searched_at=now - 5))
    store.push(record("cam-quiet", 2, searched_at=now - 2))
    (device,) = store.devices()
    assert device["device_id"] == "cam-quiet" and device["status"] is None
    assert device["last_seen"] == pytest.approx(now - 2, abs=1e-3)
    assert 0 < client.ttl(matches_key("cam-quiet")) <= store.device_ttl_s


def test_status_is_stored_with_its_expiry_and_listed(client: redis.Redis) -> None:
    store = MatchStore(client, device_ttl_s=600)
    now = time.time()
    store.put_status("cam-1", '{"state":"online"}', now - 1)
    store.put_status("cam-2", '{"state":"degraded"}', now)
    assert client.get(status_key("cam-1")) == b'{"state":"online"}' and 0 < client.ttl(status_key("cam-1")) <= 600
    listed = store.devices()
    assert [d["device_id"] for d in listed] == ["cam-2", "cam-1"]
    assert listed[1]["status"] == {"state": "online"} and listed[1]["last_seen"] == pytest.approx(now - 1, abs=1e-3)
    assert "record" not in listed[0]


def test_pages_are_exact(client: redis.Redis) -> None:
    store = MatchStore(client)
    now = time.time()
    for n in range(7):
        store.push(record(f"cam-{n}", 1, searched_at=now - 10 + n))
    store.put_status("cam-9", "{}", now)
    page, total = store.page(0, 3)
    assert total == 8 and [d["device_id"] for d in page] == ["cam-9", "cam-6", "cam-5"]
    assert page[0]["record"] is None and page[1]["record"]["device_id"] == "cam-6"
    page, total = store.page(3, 3)
    assert [d["device_id"] for d in page] == ["cam-4", "cam-3", "cam-2"]
    page, _ = store.page(6, 3)
    assert [d["device_id"] for d in page] == ["cam-1", "cam-0"]
    assert store.page(8, 3) == ([], 8)
    assert [d["device_id"] for d in store.devices(limit=2, offset=1)] == ["cam-6", "cam-5"]


def test_foreign_values_in_our_keys_read_as_absent(client: redis.Redis) -> None:
    store = MatchStore(client)
    store.push(record("cam-1", 1))
    client.lpush(matches_key("cam-1"), b"\xff not json")
    client.set(status_key("cam-1"), b"[unclosed")
    assert [r["seq"] for r in store.latest("cam-1", 5)] == [1]
    (device,) = store.devices()
    assert device["status"] is None
    page, _ = store.page(0, 5)
    assert page[0]["record"] is None  # the newest entry is the foreign one


def test_a_store_that_refuses_writes_and_one_that_is_down(redis_server: RedisProcess, client: redis.Redis) -> None:
    store = MatchStore(client)
    assert store.state() == "ok"
    client.config_set("maxmemory", "1")
    try:
        assert store.state() == "refusing_writes"
        with pytest.raises(MatchStoreUnavailable, match="cam-1/1"):
            store.push(record("cam-1", 1))
        with pytest.raises(MatchStoreUnavailable, match="cam-1"):
            store.put_status("cam-1", "{}", time.time())
        assert client.exists(seen_key("cam-1", 1)) == 0  # refused at the first write: no marker without a record
        assert store.latest("cam-1") == []  # reads still work
    finally:
        client.config_set("maxmemory", "0")
    redis_server.stop()
    assert store.state() == "down"
    for call in (
        lambda: store.push(record("cam-1", 2)),
        lambda: store.put_status("cam-1", "{}", 0.0),
        lambda: store.latest("cam-1"),
        lambda: store.page(0, 5),
    ):
        with pytest.raises(MatchStoreUnavailable):
            call()


def test_connect_unwraps_the_secret_only_for_the_client(redis_server: RedisProcess) -> None:
    client = connect(SecretStr(redis_server.url), timeout_s=0.7)
    assert client.ping()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.7 and kwargs["socket_connect_timeout"] == 0.7
    assert client.get(DEVICES_KEY) is None
    json.dumps(kwargs, default=str)


def test_the_defaults_are_the_settings_defaults(redis_server: RedisProcess) -> None:
    """``catalog indexes`` builds a store from a URL alone: it must bound keys exactly as the search does."""
    fields = CloudSettings.model_fields
    store = MatchStore(connect(redis_server.url))
    assert store.cap == fields["match_list_cap"].default
    assert store.seen_ttl_s == fields["seen_ttl_s"].default
    assert store.device_ttl_s == fields["device_ttl_s"].default
    assert store.max_devices == fields["max_devices"].default
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == fields["redis_timeout_s"].default
    # A pooled connection idle for 30 s is PINGed before use, so the first command after a Redis restart
    # does not fail on a dead socket.
    assert kwargs["health_check_interval"] == 30


def test_a_refused_bound_names_the_key_and_the_smallest_bounds_are_kept(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="match list cap must be >= 1, got 0"):
        MatchStore(client, cap=0)
    with pytest.raises(ValueError, match="device_ttl_s and max_devices must be >= 1, got 0, 5"):
        MatchStore(client, device_ttl_s=0, max_devices=5)
    store = MatchStore(client, cap=1, device_ttl_s=1, max_devices=1)
    store.push(record("cam-1", 1))
    store.push(record("cam-2", 1))
    assert [d["device_id"] for d in store.devices()] == ["cam-2"]  # one device kept: the newest


def test_a_record_is_stored_as_the_compact_json_the_size_budget_measured(client: redis.Redis) -> None:
    """The search measures a record's size as compact JSON (service._size): the store writes exactly that."""
    rec = record("cam-1", 1, title="a b", scores=[0.5, 1])
    MatchStore(client).push(rec)
    assert client.lindex(matches_key("cam-1"), 0) == json.dumps(rec, separators=(",", ":")).encode()


def test_a_record_that_is_not_json_is_refused_before_anything_is_written(client: redis.Redis) -> None:
    store = MatchStore(client)
    with pytest.raises(ValueError):
        store.push(record("cam-1", 1, score=float("nan")))
    assert client.exists(seen_key("cam-1", 1), matches_key("cam-1"), DEVICES_KEY) == 0
    assert store.push(record("cam-1", 1, score=0.5)) is True  # the seq is not marked seen


def test_a_refused_status_write_changes_nothing(client: redis.Redis) -> None:
    """The status, the registry entry and the pruning of silent devices are one transaction: under
    ``maxmemory`` the pruning (which frees memory, so Redis would run it alone) is refused with the rest."""
    store = MatchStore(client, device_ttl_s=60)
    client.zadd(DEVICES_KEY, {"cam-silent": time.time() - 3600})
    client.config_set("maxmemory", "1")
    try:
        with pytest.raises(MatchStoreUnavailable, match="redis status write failed for cam-1"):
            store.put_status("cam-1", "{}", time.time())
    finally:
        client.config_set("maxmemory", "0")
    assert client.zrange(DEVICES_KEY, 0, -1) == [b"cam-silent"] and client.exists(status_key("cam-1")) == 0


def test_the_device_list_reads_no_match_records_and_a_page_one_per_device(client: redis.Redis) -> None:
    store = MatchStore(client)
    for n in range(3):
        store.push(record(f"cam-{n}", 1))
    client.config_resetstat()
    store.devices()
    assert "cmdstat_lindex" not in client.info("commandstats")
    store.page(0, 2)
    assert client.info("commandstats")["cmdstat_lindex"]["calls"] == 2


def test_the_device_list_is_bounded_per_call(client: redis.Redis) -> None:
    now = time.time()
    client.zadd(DEVICES_KEY, {f"cam-{n}": now - n for n in range(1001)})
    listed = MatchStore(client).devices()
    assert len(listed) == 1000 and listed[-1]["device_id"] == "cam-999"


def test_a_client_that_decodes_replies_lists_the_same_devices(redis_server: RedisProcess) -> None:
    store = MatchStore(redis.Redis.from_url(redis_server.url, decode_responses=True))
    store.push(record("cam-1", 1))
    store.put_status("cam-2", '{"state":"online"}', time.time())
    page, total = store.page(0, 5)
    assert total == 2 and [d["device_id"] for d in page] == ["cam-2", "cam-1"]
    assert page[0]["status"] == {"state": "online"} and page[1]["record"]["seq"] == 1


def test_a_store_that_answers_ping_but_not_a_write_in_time_is_down(redis_server: RedisProcess) -> None:
    """``CLIENT PAUSE WRITE`` (what a failover does): PING answers, the write probe waits past the timeout."""
    admin = connect(redis_server.url)
    store = MatchStore(connect(redis_server.url, timeout_s=0.3))
    admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
    try:
        assert store.client.ping() and store.state() == "down"
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    assert store.state() == "ok"


def test_a_failed_read_says_it_was_a_read(redis_server: RedisProcess, client: redis.Redis) -> None:
    store = MatchStore(client)
    redis_server.stop()
    for call in (lambda: store.latest("cam-1"), lambda: store.page(0, 5)):
        with pytest.raises(MatchStoreUnavailable, match="redis read failed: "):
            call()
