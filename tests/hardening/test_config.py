"""Bad configuration stops start-up with one clear line per problem, naming the key and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_lambda.settings import CloudSettings, SettingsError
from edge_component.config import ConfigError, build_config, parse_overrides
from tests.hardening.conftest import count_case

EDGE_CASES = [
    ({"device_id": "cam/01"}, "device_id"),
    ({"device_id": "x" * 200}, "device_id"),
    ({"source": {"kind": "webcam"}}, "source.kind"),
    ({"source": {"kind": "stream"}}, "source"),
    ({"source": {"kind": "video"}}, "source"),
    ({"source": {"stall_timeout_s": -1}}, "source.stall_timeout_s"),
    ({"source": {"reconnect_min_s": 5, "reconnect_max_s": 1}}, "source"),
    ({"live": {"max_rate_hz": "fast"}}, "live.max_rate_hz"),
    ({"live": {"change_threshold": 2}}, "live.change_threshold"),
    ({"live": {"roi": {"x": 0.8, "w": 0.5}}}, "live.roi"),
    ({"publish": {"qos": 2}}, "publish.qos"),
    ({"publish": {"queue_capacity": 0}}, "publish.queue_capacity"),
    ({"publish": {"kind": "file"}}, "publish"),
    ({"publish": {"mqtt": {"port": 70000}}}, "publish.mqtt.port"),
    ({"publish": {"mqtt": {"cert_file": "/nonexistent.pem"}}}, "publish.mqtt"),
    ({"publish": {"mqtt": {"ca_file": "/nonexistent/ca.pem"}}}, "publish.mqtt"),
    ({"model": {"backend": "tensorflow"}}, "model.backend"),
    ({"log_level": "LOUD"}, "log_level"),
    ({"sourcee": {}}, "sourcee"),  # a misspelt section
    ({"live": {"max_rate": 3}}, "live.max_rate"),  # a misspelt key
]


@pytest.mark.parametrize(("layer", "key"), EDGE_CASES)
def test_edge_config_names_the_key_in_one_line(layer: dict, key: str) -> None:
    count_case("config: invalid edge key")
    with pytest.raises(ConfigError) as caught:
        build_config(layer)
    message = str(caught.value)
    assert "\n" not in message, message
    assert f"'{key}" in message, message
    assert len(message) < 400


def test_every_bad_key_is_named_when_several_are_wrong() -> None:
    with pytest.raises(ConfigError) as caught:
        build_config({"publish": {"qos": 5}, "live": {"max_rate_hz": -1}})
    assert "publish.qos" in str(caught.value) and "live.max_rate_hz" in str(caught.value)


@pytest.mark.parametrize("item", ["noequals", "=3", "a..b=1", "live.max_rate_hz=[unclosed"])
def test_bad_set_flags(item: str) -> None:
    count_case("config: invalid --set flag")
    with pytest.raises(ConfigError) as caught:
        build_config(parse_overrides([item]))
    assert "\n" not in str(caught.value) and "--set" in str(caught.value)


CLOUD_CASES = [
    ({"VS_TOP_K": "0"}, "VS_TOP_K"),
    ({"VS_TOP_K": "many"}, "VS_TOP_K"),
    ({"VS_MIN_SCORE": "nan"}, "VS_MIN_SCORE"),
    ({"VS_MATCH_LIST_CAP": "-5"}, "VS_MATCH_LIST_CAP"),
    ({"VS_REDIS_URL": "http://cache:6379"}, "VS_REDIS_URL"),
    ({"VS_METADATA": "postgres://x"}, "VS_METADATA"),
    ({"VS_MATCH_PUBLISH": "mqtt://host"}, "VS_MATCH_PUBLISH"),
    ({"VS_REDIS_TIMEOUT_S": "inf"}, "VS_REDIS_TIMEOUT_S"),
    ({"VS_INDEX_DIR": " "}, "VS_INDEX_DIR"),
]


@pytest.mark.parametrize(("env", "key"), CLOUD_CASES)
def test_cloud_settings_name_the_variable_in_one_line(env: dict[str, str], key: str, tmp_path: Path) -> None:
    count_case("config: invalid cloud variable")
    with pytest.raises(SettingsError) as caught:
        CloudSettings.from_env({"VS_INDEX_DIR": str(tmp_path), **env})
    message = str(caught.value)
    assert "\n" not in message and key in message, message


def test_missing_index_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        CloudSettings.from_env({})
    assert "VS_INDEX_DIR" in str(caught.value)
