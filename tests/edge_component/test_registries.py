"""Sources and publishers are registered like backbones: one file per kind, found by its file; the configuration
accepts exactly the registered kinds and names the key and the kinds when it refuses one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_component.config import ConfigError, EdgeConfig, build_config, parse_overrides
from edge_component.packaging.build import ROOT, device_code
from edge_component.publishers import create_publisher
from edge_component.publishers.base import PUBLISHERS, publisher_kinds
from edge_component.sources import create_reader
from edge_component.sources.base import READERS, source_kinds
from model.plugins import load_plugins

PLUGIN = """
import numpy as np
from edge_component.sources.base import FrameReader, register_reader

@register_reader
class TestPattern(FrameReader):
    kind = "test-pattern"

    @classmethod
    def from_config(cls, cfg):
        return cls()

    def open(self): pass
    def read(self): return np.zeros((4, 4, 3), np.uint8)
    def close(self): pass
"""


def test_the_kinds_are_the_files_that_register_one() -> None:
    assert source_kinds() == ["camera", "deeplens", "folder", "stream", "video"]
    assert publisher_kinds() == ["file", "greengrass", "greengrass_v1", "mqtt", "stdout"]
    for kind, cls in {**READERS, **PUBLISHERS}.items():
        assert cls.kind == kind


@pytest.fixture
def extra_package(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "extra_sources").mkdir()
    (tmp_path / "extra_sources" / "__init__.py").write_text("")
    (tmp_path / "extra_sources" / "pattern.py").write_text(PLUGIN)
    sys.path.insert(0, str(tmp_path))
    try:
        yield "extra_sources"
    finally:
        sys.path.remove(str(tmp_path))
        READERS.pop("test-pattern", None)
        for name in [m for m in sys.modules if m.startswith("extra_sources")]:
            del sys.modules[name]


def test_a_new_file_that_registers_itself_is_a_configurable_kind(extra_package: str) -> None:
    with pytest.raises(ConfigError, match=r"source\.kind"):
        build_config(parse_overrides(["source.kind=test-pattern"]))
    assert load_plugins(extra_package) == {}
    cfg = build_config(parse_overrides(["source.kind=test-pattern"]))
    reader = create_reader(cfg.source)
    assert reader.kind == "test-pattern" and np.array_equal(reader.read(), np.zeros((4, 4, 3), np.uint8))


def test_an_unknown_kind_names_the_key_and_the_registered_kinds() -> None:
    with pytest.raises(ConfigError) as info:
        build_config(parse_overrides(["publish.kind=kafka"]))
    assert str(info.value) == (
        "config key 'publish.kind': unknown kind 'kafka'; registered: file, greengrass, greengrass_v1, mqtt, stdout"
    )


def test_each_kind_is_built_from_its_configuration(tmp_path: Path) -> None:
    cfg = EdgeConfig.model_validate(
        {"device_id": "cam-1", "publish": {"kind": "file", "file_path": str(tmp_path / "out.jsonl")}}
    )
    publisher = create_publisher(cfg)
    assert type(publisher) is PUBLISHERS["file"] and publisher.path == tmp_path / "out.jsonl"  # type: ignore[attr-defined]
    video = create_reader(EdgeConfig.model_validate({"source": {"kind": "video", "path": "/x.avi"}}).source)
    assert type(video) is READERS["video"] and video.path == "/x.avi"  # type: ignore[attr-defined]


def test_the_component_ships_every_registered_kind() -> None:
    shipped = set(device_code(ROOT))
    for package in ("sources", "publishers"):
        files = {f"edge_component/{package}/{p.name}" for p in (ROOT / "edge_component" / package).glob("*.py")}
        assert files <= shipped, sorted(files - shipped)
