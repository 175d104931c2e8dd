"""Per-device keys expire and the registry is bounded.

The device registry, status keys and match lists never expired; 5,000 ids from one client pushed real
devices off the first API page. Now every per-device key lives ``VS_DEVICE_TTL_S`` after its device was
last heard from, the registry forgets devices older than that and keeps at most ``VS_MAX_DEVICES``, and
``/api/latest`` pages through every device.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cloud_lambda.api import handler as api
from cloud_lambda.matches import DEVICES_KEY, MatchStore, matches_key, seen_key, status_key
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.processes import RedisProcess
from tests.hardening.conftest import Catalog, count_case

TTL = 3600


@pytest.fixture
def service(hardening_catalog: Catalog, redis_server: RedisProcess) -> Iterator[SearchService]:
    settings = CloudSettings.build(
        index_dir=str(hardening_catalog.folder), redis_url=redis_server.url, device_ttl_s=TTL, max_devices=50
    )
    svc = SearchService(settings)
    yield svc
    svc.metadata.close()


def feature(catalog: Catalog, device: str, seq: int) -> dict[str, Any]:
    message = FeatureMessage(device, seq, time.time(), catalog.model_id, catalog.vectors[seq % 8])
    return {**json.loads(encode(message)), "topic_device": device}


def status(device: str) -> dict[str, Any]:
    return {"v": 1, "device_id": device, "state": "online", "topic_device": device}


def test_every_per_device_key_expires(service: SearchService, hardening_catalog: Catalog) -> None:
    client: redis.Redis = service.matches.client
    assert service.handle_feature_event(feature(hardening_catalog, "cam-ttl", 1))["status"] == "accepted"
    assert service.handle_status_event(status("cam-ttl"))["status"] == "accepted"
    for key in (matches_key("cam-ttl"), status_key("cam-ttl")):
        assert 0 < client.ttl(key) <= TTL, key
    assert 0 < client.ttl(seen_key("cam-ttl", 1)) <= service.settings.seen_ttl_s


def test_a_device_silent_for_longer_than_the_ttl_is_forgotten(service: SearchService) -> None:
    store: MatchStore = service.matches
    now = time.time()
    store.put_status("cam-gone", '{"state":"online"}', now - TTL - 60)
    store.put_status("cam-here", '{"state":"online"}', now)
    listed = [d["device_id"] for d in store.page(0, 100)[0]]
    assert listed == ["cam-here"] and store.page(0, 100)[1] == 1
    assert store.client.zscore(DEVICES_KEY, "cam-gone") is None  # removed by the next write


def test_the_registry_keeps_the_newest_devices_up_to_its_bound(service: SearchService) -> None:
    count_case("registry: more devices than the bound")
    store: MatchStore = service.matches
    now = time.time()
    for n in range(60):
        store.put_status(f"cam-{n:02d}", "{}", now - 60 + n)
    assert store.client.zcard(DEVICES_KEY) == 50
    listed = {d["device_id"] for d in store.page(0, 100)[0]}
    assert listed == {f"cam-{n:02d}" for n in range(10, 60)}


def test_real_devices_stay_reachable_when_one_client_floods_ids(
    hardening_catalog: Catalog, redis_server: RedisProcess
) -> None:
    count_case("registry: 5,000 ids from one client")
    settings = CloudSettings.build(index_dir=str(hardening_catalog.folder), redis_url=redis_server.url)
    service = SearchService(settings)
    api.set_service(service)
    try:
        for device in ("real-1", "real-2"):
            service.handle_feature_event(feature(hardening_catalog, device, 5))
        with service.matches.client.pipeline(transaction=False) as pipe:
            for n in range(5000):
                pipe.zadd(DEVICES_KEY, {f"spam-{n:04d}": time.time() + 1})
            pipe.execute()
        found: dict[str, Any] = {}
        cursor = ""
        for _ in range(20):
            query = "limit=500" + (f"&cursor={cursor}" if cursor else "")
            event = {"version": "2.0", "rawPath": "/api/latest", "rawQueryString": query}
            response = api.lambda_handler({**event, "requestContext": {"http": {"method": "GET"}}}, None)
            body = json.loads(response["body"])
            found.update({d["device_id"]: d for d in body["devices"]})
            if not body["next"]:
                break
            cursor = body["next"]
        assert body["total"] == 5002 and len(found) == 5002
        assert found["real-1"]["record"]["seq"] == 5 and found["real-2"]["record"]["seq"] == 5
    finally:
        api.set_service(None)
        service.metadata.close()
