"""Device ids are AWS IoT thing names everywhere: one rule (``model.contracts.thing_name``), every door.

AWS IoT: a thing name is 1-128 characters of ``[a-zA-Z0-9:_-]`` (CreateThing, "thingName" pattern). Once
``.`` and ``..`` were accepted: the browser then normalized ``/api/devices/../matches`` away and
every camera card failed. A trailing newline also slipped through (``$`` matches before it).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import ValidationError

from cloud_lambda.api import handler as api
from cloud_lambda.search.service import SearchService
from edge_component.config import ConfigError, build_config
from model.contracts.errors import Rejected
from model.contracts.thing_name import THING_NAME_MAX, is_thing_name
from model.contracts.wire import FeatureMessage, decode, encode
from simulator.stack.bridge import rule_event
from tests.hardening.conftest import Catalog, count_case

BAD = [".", "..", "a.b", "cam-01.", "cam\n", "cam-01\n", "", "x" * 129, "a/b", "a+b", "a#b", "é", "cam 1", "\x00"]
GOOD = ["cam-01", "a:b_c-d", "x" * THING_NAME_MAX, "0", "Z"]


@pytest.mark.parametrize("name", GOOD)
def test_thing_names_pass_every_door(name: str) -> None:
    assert is_thing_name(name)
    assert build_config({"device_id": name}).device_id == name


@pytest.mark.parametrize("name", BAD)
def test_a_bad_device_id_is_refused_by_the_rule(name: str) -> None:
    count_case("device id: not a thing name")
    assert not is_thing_name(name)


@pytest.mark.parametrize("name", BAD)
def test_device_config_refuses_it(name: str) -> None:
    with pytest.raises(ConfigError, match="device_id"):
        build_config({"device_id": name})


@pytest.mark.parametrize("name", BAD)
def test_the_wire_codec_refuses_it(name: str, hardening_catalog: Catalog) -> None:
    message = FeatureMessage(name, 1, time.time(), hardening_catalog.model_id, hardening_catalog.vectors[0])
    with pytest.raises(Rejected) as refused:
        encode(message)
    assert refused.value.reason == "bad_device_id"
    good = json.loads(encode(FeatureMessage("cam-01", 1, time.time(), hardening_catalog.model_id, message.vector)))
    with pytest.raises(Rejected) as refused:
        decode(json.dumps({**good, "device_id": name}).encode())
    assert refused.value.reason == "bad_device_id"


@pytest.mark.parametrize("name", [n for n in BAD if n and "/" not in n and "+" not in n and "#" not in n])
def test_the_rule_bridge_refuses_its_topic(name: str) -> None:
    for kind in ("features", "status"):
        with pytest.raises(Rejected) as refused:
            rule_event(f"visualsearch/{name}/{kind}", b'{"v": 1}')
        assert refused.value.reason == "bad_topic"


@pytest.mark.parametrize("name", BAD)
def test_the_search_handlers_refuse_it(name: str, hardened_service: SearchService, hardening_catalog: Catalog) -> None:
    payload = encode(FeatureMessage("cam-01", 1, time.time(), hardening_catalog.model_id, hardening_catalog.vectors[0]))
    event: dict[str, Any] = {**json.loads(payload), "topic_device": name}
    assert hardened_service.handle_feature_event(event)["reason"] == "bad_topic"
    assert hardened_service.handle_feature_payload(f"visualsearch/{name}/features", payload)["reason"] == "bad_topic"
    status = {"v": 1, "device_id": name, "state": "online", "topic_device": name}
    assert hardened_service.handle_status_event(status)["reason"] == "bad_topic"


@pytest.mark.parametrize("name", [".", "..", "a.b", "cam\n", "x" * 129, "é", "cam 1"])
def test_the_api_refuses_it(name: str, hardened_service: SearchService) -> None:
    api.set_service(hardened_service)
    try:
        for suffix in ("matches", "matches/latest"):
            path = f"/api/devices/{name}/{suffix}"
            response = api.lambda_handler(
                {"version": "2.0", "rawPath": path, "requestContext": {"http": {"method": "GET"}}}, None
            )
            assert response["statusCode"] == 400, (path, response)
            assert json.loads(response["body"])["error"]["code"] == "bad_device_id"
    finally:
        api.set_service(None)


@pytest.mark.parametrize("prefix", [".", "a.b", "x" * 126])
def test_replay_device_prefixes_make_thing_names(prefix: str) -> None:
    from simulator.replay import ReplayConfig

    with pytest.raises(ValidationError) as refused:
        ReplayConfig(device_prefix=prefix, model_id="m", count=1)
    assert [e["loc"] for e in refused.value.errors()] == [("device_prefix",)]
    assert ReplayConfig(device_prefix="cam", model_id="m", count=1).device_ids() == ["cam-000"]


def test_the_refusal_says_what_and_shows_at_most_80_characters() -> None:
    from model.contracts.thing_name import RULE, check_thing_name

    assert check_thing_name("cam-01") == "cam-01"
    with pytest.raises(ValueError) as refused:
        check_thing_name("a.b", "device_id")
    assert str(refused.value) == f"device_id 'a.b' is not {RULE}"
    with pytest.raises(ValueError) as refused:
        check_thing_name("x" * 100 + ".")
    assert str(refused.value) == f"device id '{'x' * 80}' is not {RULE}"
