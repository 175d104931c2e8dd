"""The device configuration (``edge_component.config``): layers, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_component.config import ConfigError, LiveSettings, build_config, live_from_mapping, load_yaml, parse_overrides


def test_config_layers_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("device_id: cam-7\nsource: {kind: video, path: /x.avi}\nlive: {max_rate_hz: 3}\n")
    cfg = build_config(
        {"live": {"max_rate_hz": 1, "heartbeat_s": 4}}, load_yaml(path), parse_overrides(["live.max_rate_hz=5"])
    )
    assert cfg.device_id == "cam-7" and cfg.source.kind == "video"
    assert cfg.live.max_rate_hz == 5 and cfg.live.heartbeat_s == 4


@pytest.mark.parametrize(
    ("layer", "key"),
    [
        ({"live": {"max_rate_hz": -1}}, "live.max_rate_hz"),
        ({"source": {"kind": "stream"}}, "source"),
        ({"publish": {"queue_capacity": 0}}, "publish.queue_capacity"),
        ({"publish": {"mqtt": {"cert_file": "/nonexistent.crt", "key_file": "/nonexistent.key"}}}, "publish.mqtt"),
        ({"live": {"roi": {"x": 0.5, "w": 0.8}}}, "live.roi"),
        ({"device_id": "bad/name"}, "device_id"),
        ({"sorce": {}}, "sorce"),
    ],
)
def test_bad_config_names_the_key(layer: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(layer)
    assert f"config key '{key}" in str(info.value)


def test_bad_yaml_and_override_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("live: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(path)
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        parse_overrides(["novalue"])


def test_live_update_validates_and_keeps_other_fields() -> None:
    current = LiveSettings(max_rate_hz=2, heartbeat_s=7)
    new = live_from_mapping({"live": {"max_rate_hz": 9}, "source": {"kind": "camera"}}, current)
    assert new.max_rate_hz == 9 and new.heartbeat_s == 7
    with pytest.raises(ConfigError, match=r"live\.change_threshold"):
        live_from_mapping({"live": {"change_threshold": 3}}, current)


def test_the_model_section_reaches_the_featurizer_whole() -> None:
    """The device and the laptop run open the featurizer with ``featurizer_options``: every setting but the path,
    each under a keyword the Featurizer takes (a field added to the section and not passed on fails here)."""
    import inspect

    from edge_component.config import ModelConfig
    from model.featurizer import Featurizer

    model = ModelConfig(backend="openvino", device="CPU", threads=3, spinning=True, backend_cache="c.json")
    options = model.featurizer_options()
    assert options == {"backend": "openvino", "device": "CPU", "threads": 3, "spinning": True, "choice_cache": "c.json"}
    assert set(options) <= set(inspect.signature(Featurizer).parameters)
    assert len(options) == len(ModelConfig.model_fields) - 1  # all but path
