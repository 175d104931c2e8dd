"""A misspelt configuration key names the key it probably meant (``--set``, YAML, Greengrass configuration)."""

from __future__ import annotations

import pytest

from edge_component.config import ConfigError, LiveSettings, build_config, live_from_mapping, parse_overrides


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("live.max_rate=5", "config key 'live.max_rate': unknown key; did you mean 'live.max_rate_hz'?"),
        ("sourc.kind=video", "config key 'sourc': unknown key; did you mean 'source'?"),
        ("publish.mqtt.hots=x", "config key 'publish.mqtt.hots': unknown key; did you mean 'publish.mqtt.host'?"),
        ("live.roi.wdth=0.5", "config key 'live.roi.wdth': unknown key (keys here: x, y, w, h)"),
    ],
)
def test_unknown_key_gets_the_closest_match(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(parse_overrides([override]))
    assert str(info.value) == expected


def test_live_update_with_a_misspelt_key_names_it_under_live() -> None:
    with pytest.raises(ConfigError, match=r"'live.heartbeat': unknown key; did you mean 'live.heartbeat_s'\?"):
        live_from_mapping({"live": {"heartbeat": 3}}, LiveSettings())
