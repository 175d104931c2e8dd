"""The recipe and gdk-config.json follow the Greengrass/GDK rules; the built component runs its recipe."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edge_component.packaging.build import ROOT, BuildError, build, device_code
from edge_component.packaging.build import main as build_main
from edge_component.packaging.closure import import_closure
from edge_component.packaging.validate import check_gdk_config, check_recipe

COMPONENT = "com.example.EdgeVisualSearch"


def _recipe() -> dict:
    return yaml.safe_load((ROOT / "recipes/recipe.yaml").read_text())


def _gdk() -> dict:
    return json.loads((ROOT / "gdk-config.json").read_text())


def test_committed_recipe_and_gdk_config_are_valid() -> None:
    assert check_gdk_config(_gdk()) == []
    assert check_recipe(_recipe(), COMPONENT) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda g: g.pop("gdk_version"), "gdk_version"),
        (lambda g: g["component"].update({"second": {}}), "exactly one key"),
        (lambda g: g["component"][COMPONENT].pop("publish"), "publish: required"),
        (lambda g: g["component"][COMPONENT]["build"].pop("custom_build_command"), "custom_build_command"),
        (lambda g: g["component"][COMPONENT]["build"].update(build_system="make"), "build_system"),
        (lambda g: g["component"][COMPONENT].update(version="v1"), "semver or NEXT_PATCH"),
        (lambda g: g["component"][COMPONENT]["publish"].pop("bucket"), "publish.bucket"),
    ],
)
def test_gdk_config_rule_violations_are_named(mutate, expected: str) -> None:
    doc = copy.deepcopy(_gdk())
    mutate(doc)
    errors = check_gdk_config(doc)
    assert any(expected in e for e in errors), errors


def _policy(recipe: dict) -> dict:
    acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    return acl["aws.greengrass.ipc.mqttproxy"][f"{COMPONENT}:mqttproxy:1"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: _policy(r)["resources"].append("visualsearch/#"), "own topics"),
        (lambda r: _policy(r)["resources"].append("visualsearch/other-thing/features"), "own topics"),
        (lambda r: _policy(r).update(operations=["*"]), "operations"),
        (lambda r: r["ComponentConfiguration"]["DefaultConfiguration"].pop("accessControl"), "accessControl"),
        (lambda r: r["Manifests"].pop(), "aarch64"),
        (lambda r: r.update(RecipeFormatVersion="2021-01-01"), "RecipeFormatVersion"),
        (lambda r: r["Manifests"][0].update(Artifacts=[{"Uri": "s3://b/c.zip", "Unarchive": "ZIP"}]), ".onnx"),
    ],
)
def test_recipe_rule_violations_are_named(mutate, expected: str) -> None:
    recipe = copy.deepcopy(_recipe())
    mutate(recipe)
    errors = check_recipe(recipe, COMPONENT)
    assert any(expected in e for e in errors), errors


def test_device_code_is_the_import_closure_of_the_device_entry_point() -> None:
    files = set(device_code(ROOT))
    # reached by a plain import, a lazy import inside a function, and a plugin registry's module-name string
    assert {"edge_component/__main__.py", "model/logs.py", "model/retrieval/settings.py"} <= files
    assert {"model/runtime/onnxruntime_backend.py", "model/runtime/openvino_backend.py"} <= files
    assert {"model/__init__.py", "model/runtime/__init__.py", "edge_component/wire/__init__.py"} <= files
    assert not any(f.startswith(("simulator/", "cloud_lambda/", "model/export/", "model/finetune/")) for f in files)


def test_closure_follows_relative_imports_and_skips_type_checking_blocks(tmp_path: Path) -> None:
    _write(tmp_path / "edge_component/__init__.py", "")
    _write(tmp_path / "edge_component/__main__.py", "from . import a\n")
    _write(
        tmp_path / "edge_component/a.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import simulator.x\n"
        "def f():\n    from .sub import b\n",
    )
    _write(tmp_path / "edge_component/sub/__init__.py", "")
    _write(tmp_path / "edge_component/sub/b.py", "import numpy\n")
    closure = import_closure(tmp_path, ["edge_component.__main__"])
    assert closure.relative_files() == [
        "edge_component/__init__.py",
        "edge_component/__main__.py",
        "edge_component/a.py",
        "edge_component/sub/__init__.py",
        "edge_component/sub/b.py",
    ]
    assert closure.third_party == {"numpy": {"edge_component.sub.b"}}


def test_build_refuses_device_code_that_imports_what_the_device_does_not_install(tmp_path: Path) -> None:
    _write(tmp_path / "edge_component/__init__.py", "")
    _write(tmp_path / "edge_component/__main__.py", "def main():\n    from model import export\n")
    _write(tmp_path / "model/__init__.py", "")
    _write(tmp_path / "model/export.py", "import torch\n")
    with pytest.raises(BuildError, match=r"torch \(imported by model\.export\)"):
        device_code(tmp_path)
    _write(tmp_path / "edge_component/__main__.py", "import model.missing\n")
    with pytest.raises(BuildError, match=r"edge_component\.__main__ imports model\.missing"):
        device_code(tmp_path)


def test_zip_holds_the_device_code_at_its_root(tmp_path: Path, tiny_model: Path) -> None:
    paths = build(ROOT, tiny_model, tmp_path / "greengrass-build", version="1.2.3")
    rendered = yaml.safe_load(paths["recipe"].read_text())
    assert rendered["ComponentVersion"] == "1.2.3"
    uris = [a["Uri"] for a in rendered["Manifests"][0]["Artifacts"]]
    assert uris[0] == f"s3://BUCKET_NAME/{COMPONENT}/1.2.3/EdgeVisualSearch.zip"
    for uri in uris:
        assert (paths["artifacts"] / uri.rsplit("/", 1)[1]).exists()
    assert check_recipe(rendered, COMPONENT) == []
    with zipfile.ZipFile(paths["zip"]) as archive:
        names = archive.namelist()
        requirements = archive.read("requirements.txt").decode()
    # the nucleus unzips into {artifacts:decompressedPath}/EdgeVisualSearch/: no folder of the same name inside
    assert sorted(n for n in names if n.endswith(".py")) == device_code(ROOT)
    assert "awsiotsdk==" in requirements and "torch" not in requirements


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "latest"])
def test_build_refuses_a_version_that_is_not_semver(version: str, tmp_path: Path, tiny_model: Path, capsys) -> None:
    code = build_main(["--model", str(tiny_model), "--out", str(tmp_path / "out"), "--version", version])
    assert code == 2
    assert f"component version {version!r} is not semver" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("entry", [["-m", "edge_component"], ["-m", "simulator.cli", "edge"]])
def test_bad_configuration_stops_start_up_naming_the_key(entry: list[str]) -> None:
    """The device entry point and the laptop's ``visual-search edge`` parse the same options."""
    result = subprocess.run(
        [sys.executable, *entry, "run", "--no-greengrass", "--set", "live.max_rate_hz=-1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "live.max_rate_hz" in result.stderr and "greater than or equal to 0" in result.stderr
