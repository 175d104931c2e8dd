"""The recipe and gdk-config.json follow the Greengrass/GDK rules; the build is the device's import closure
and lays out what GDK CLI 1.6.2 publishes."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edge_component.packaging.build import ROOT, BuildError, build, device_code, render_recipe
from edge_component.packaging.build import main as build_main
from edge_component.packaging.closure import import_closure
from edge_component.packaging.validate import check_gdk_config, check_recipe
from edge_component.packaging.wheelhouse import platform_tags, wheel_name

COMPONENT = "com.example.EdgeVisualSearch"


def _recipe() -> dict:
    return yaml.safe_load((ROOT / "recipe.yaml").read_text())


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
        (lambda r: _policy(r)["resources"].append("visualsearch/#"), "is not one of this component's topics"),
        (lambda r: _policy(r)["resources"].append("*"), "is not one of this component's topics"),
        (lambda r: _policy(r)["resources"].append("visualsearch/other-thing/features"), "component's topics"),
        (lambda r: _policy(r)["resources"].append("visualsearch/{iot:thingName}/features"), "stays literal"),
        (lambda r: r.pop("ComponentDependencies"), "aws.greengrass.Nucleus: required"),
        (
            lambda r: r["ComponentDependencies"]["aws.greengrass.Nucleus"].update(VersionRequirement=">=2.5.0"),
            "must require >= 2.6.0",
        ),
        (lambda r: r["ComponentDependencies"]["aws.greengrass.Nucleus"].update(DependencyType="HARD"), "SOFT"),
        (lambda r: r["Manifests"][0]["Lifecycle"]["Install"].update(Script="pip install x"), "device_install"),
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
    assert "edge_component/packaging/device_install.py" in files  # the Install step's code ships too
    assert {"model/runtime/onnxruntime_backend.py", "model/runtime/openvino_backend.py"} <= files
    assert {"model/__init__.py", "model/runtime/__init__.py", "model/contracts/__init__.py"} <= files
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
    _write(tmp_path / "edge_component/packaging/__init__.py", "")
    _write(tmp_path / "edge_component/packaging/device_install.py", "import json\n")
    _write(tmp_path / "edge_component/__main__.py", "def main():\n    from model import export\n")
    _write(tmp_path / "model/__init__.py", "")
    _write(tmp_path / "model/export.py", "import torch\n")
    with pytest.raises(BuildError, match=r"torch \(imported by model\.export\)"):
        device_code(tmp_path)
    _write(tmp_path / "edge_component/__main__.py", "import model.missing\n")
    with pytest.raises(BuildError, match=r"edge_component\.__main__ imports model\.missing"):
        device_code(tmp_path)


def test_zip_holds_the_device_code_and_its_pins_at_its_root(tmp_path: Path, tiny_model: Path) -> None:
    paths = build(ROOT, tiny_model, tmp_path / "greengrass-build", version="1.2.3")
    rendered = yaml.safe_load(paths["recipe"].read_text())
    assert rendered["ComponentVersion"] == "1.2.3" and check_recipe(rendered, COMPONENT) == []
    for manifest in rendered["Manifests"]:
        for artifact in manifest["Artifacts"]:  # GDK publish rewrites each URI whose file it finds
            file_name = artifact["Uri"].rsplit("/", 1)[1]
            assert artifact["Uri"] == f"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{file_name}"
            assert (paths["artifacts"] / file_name).is_file()
    with zipfile.ZipFile(paths["zip"]) as archive:
        names = archive.namelist()
        pins = {n: archive.read(n).decode() for n in names if n.startswith("requirements/")}
    # the nucleus unzips into {artifacts:decompressedPath}/EdgeVisualSearch/: no folder of the same name inside
    assert sorted(n for n in names if n.endswith(".py")) == device_code(ROOT)
    assert set(pins) == {f"requirements/{p.name}" for p in (ROOT / "requirements/device").glob("*.txt")}
    assert "awsiotsdk==" in pins["requirements/common.txt"] and not any("torch" in t for t in pins.values())


def test_gdk_custom_build_lays_out_what_gdk_publish_reads(tmp_path: Path, tiny_model: Path) -> None:
    """GDK CLI 1.6.2 runs custom_build_command as given, from the project root, with the first python3 on PATH
    (commands/component/BuildCommand.py); publish then reads greengrass-build/recipes/<recipe file name> and
    uploads greengrass-build/artifacts/<name>/<gdk-config version>/ (the literal NEXT_PATCH folder), rewriting
    each s3:// URI whose file it finds there exactly once, and refuses a built recipe over 16,000 bytes
    (config/ComponentPublishConfiguration.py, transformer/PublishRecipeTransformer.py, common/consts.py)."""
    gdk = _gdk()["component"][COMPONENT]
    command = gdk["build"]["custom_build_command"]
    out = tmp_path / "greengrass-build"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}  # no project venv on PATH
    result = subprocess.run(
        [*command, "--out", str(out), "--model", str(tiny_model)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    recipe_file = out / "recipes" / "recipe.yaml"
    built = yaml.safe_load(recipe_file.read_text())
    assert built["ComponentName"] == COMPONENT and built["ComponentVersion"] == gdk["version"] == "NEXT_PATCH"
    assert built["ComponentPublisher"] == gdk["author"]
    assert len(recipe_file.read_bytes()) <= 16_000
    folder = out / "artifacts" / COMPONENT / gdk["version"]
    for manifest in built["Manifests"]:
        for artifact in manifest["Artifacts"]:
            assert len(list(folder.glob(Path(artifact["Uri"]).name))) == 1


def test_gdk_build_without_the_project_venv_says_what_to_do(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "EVS_BUILD_PYTHON": str(tmp_path / "missing/python")}
    result = subprocess.run(
        ["python3", "-m", "edge_component.packaging.gdk_build"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "run `make setup`" in result.stderr


def test_a_wheelhouse_is_an_artifact_of_its_own_platform_only() -> None:
    rendered = render_recipe(_recipe(), COMPONENT, "1.0.0", "me", [wheel_name("x86_64"), wheel_name("aarch64")])
    by_arch = {
        m["Platform"]["architecture"]: [a["Uri"].rsplit("/", 1)[1] for a in m["Artifacts"]]
        for m in rendered["Manifests"]
    }
    assert "wheelhouse-linux-x86_64.zip" in by_arch["amd64"] and "wheelhouse-linux-aarch64.zip" not in by_arch["amd64"]
    assert (
        "wheelhouse-linux-aarch64.zip" in by_arch["aarch64"] and "wheelhouse-linux-x86_64.zip" not in by_arch["aarch64"]
    )
    assert platform_tags("aarch64")[0] == "manylinux_2_35_aarch64" and "manylinux_2_17_aarch64" in platform_tags(
        "aarch64"
    )


@pytest.mark.parametrize(
    ("runtimes", "pythons", "message"),
    [
        (["openvino"], ["3.9"], "--wheelhouse-pythons: 3.9 not among the pinned 3.10, 3.11, 3.12"),
        (["jetson"], None, "no x86_64 wheels for runtime(s) jetson"),
    ],
)
def test_a_wheelhouse_the_pins_do_not_cover_is_refused(
    tmp_path: Path, tiny_model: Path, runtimes, pythons, message
) -> None:
    with pytest.raises(BuildError, match=re.escape(message)):
        build(ROOT, tiny_model, tmp_path / "out", "1.0.0", wheelhouse_runtimes=runtimes, wheelhouse_pythons=pythons)


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "latest"])
def test_build_refuses_a_version_that_is_not_semver(version: str, tmp_path: Path, tiny_model: Path, capsys) -> None:
    code = build_main(["--model", str(tiny_model), "--out", str(tmp_path / "out"), "--version", version])
    assert code == 2
    assert f"component version {version!r} is not semver" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("entry", [["-m", "edge_component"], ["-m", "model.hub", "edge"]])
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
