"""The recipe and gdk-config.json follow the Greengrass/GDK rules; the built component runs its recipe."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edge_component.packaging.build import ROOT, build
from edge_component.packaging.validate import check_gdk_config, check_recipe
from edge_component.wire.codec import decode
from tests.edge_component.nucleus import TestNucleus

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


def test_built_component_runs_its_recipe_against_a_nucleus(tmp_path: Path, tiny_model: Path, video_file: Path) -> None:
    """Build, unzip like the nucleus does, and run the rendered Run script: it publishes over IPC."""
    paths = build(ROOT, tiny_model, tmp_path / "greengrass-build", version="1.2.3")
    rendered = yaml.safe_load(paths["recipe"].read_text())
    assert rendered["ComponentVersion"] == "1.2.3"
    uris = [a["Uri"] for a in rendered["Manifests"][0]["Artifacts"]]
    assert uris[0] == f"s3://BUCKET_NAME/{COMPONENT}/1.2.3/EdgeVisualSearch.zip"
    for uri in uris:
        assert (paths["artifacts"] / uri.rsplit("/", 1)[1]).exists()
    assert check_recipe(rendered, COMPONENT) == []

    decompressed = tmp_path / "decompressed"
    with zipfile.ZipFile(paths["zip"]) as archive:
        names = archive.namelist()
        archive.extractall(decompressed)
    assert not any("export" in n or "cloud_lambda" in n or "finetune" in n for n in names)
    requirements = (decompressed / "EdgeVisualSearch/requirements.txt").read_text()
    assert "awsiotsdk==" in requirements and "torch" not in requirements

    work = tmp_path / "work"
    work.mkdir()
    (work / "venv").symlink_to(Path(sys.executable).parent.parent)  # stands in for the Install step's venv
    script = rendered["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    for var, value in {
        "{artifacts:decompressedPath}": decompressed,
        "{artifacts:path}": paths["artifacts"],
        "{work:path}": work,
    }.items():
        script = script.replace(var, str(value))

    config = rendered["ComponentConfiguration"]["DefaultConfiguration"]
    config.update(device_id="cam-pkg")
    config["source"] = {"kind": "video", "path": str(video_file), "realtime": False}
    config["live"].update(max_rate_hz=0, change_threshold=None)
    nucleus = TestNucleus(COMPONENT, config).start()
    try:
        env = {**os.environ, **nucleus.env(), "AWS_IOT_THING_NAME": "cam-pkg"}
        env.pop("PYTHONPATH", None)
        # cwd elsewhere: the code must come from the unzipped artifact, not from the work tree
        result = subprocess.run(
            ["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-3000:]
        features = [p for p in nucleus.published if p.topic == "visualsearch/cam-pkg/features"]
    finally:
        nucleus.stop()
    assert len(features) == 12
    assert all(decode(p.payload).device_id == "cam-pkg" for p in features)
    # JSON-lines logs on stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(line["msg"] == "edge loop started" for line in lines)


def test_bad_configuration_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "edge", "run", "--no-greengrass", "--set", "live.max_rate_hz=-1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "live.max_rate_hz" in result.stderr and "greater than or equal to 0" in result.stderr
