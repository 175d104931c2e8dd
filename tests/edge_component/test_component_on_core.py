"""The built component on the test core: a clean Install from the zip's own requirements, then Run.

One core is installed per module (a fresh venv with the host's python3, pip from the zip's requirements); the
tests then redeploy onto it the way a deployment would, so the work folder (and its venv) stays.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_component.packaging.build import ROOT, build
from edge_component.wire.codec import decode
from tests.edge_component.conftest import synthetic_frames, write_video
from tests.edge_component.nucleus_core import RunWith, TestCore

COMPONENT = "com.example.EdgeVisualSearch"
THING = "cam-core"


def core_pip_cache(run_with: RunWith) -> dict[str, str]:
    """The nucleus's environment for pip: the run-with user's own cache, or a shared one it owns.

    Under root the component runs as another user whose home is usually not writable; an operator would set
    PIP_CACHE_DIR in the nucleus service's environment the same way (the nucleus passes its environment on).
    """
    if run_with.is_current:
        return {}
    cache = ROOT / ".cache" / f"core-pip-{run_with.uid}"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.chown(cache, run_with.uid, run_with.gid)
    return {"PIP_CACHE_DIR": str(cache)}


@dataclass
class Installed:
    core: TestCore
    build_dir: Path
    install_s: float


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Installed]:
    out = tmp_path_factory.mktemp("component")
    build(ROOT, tiny_model, out / "greengrass-build", version="1.0.0")
    run_with = RunWith.default()
    core = TestCore(thing_name=THING, nucleus_env=core_pip_cache(run_with), run_with=run_with)
    try:
        core.deploy(
            out / "greengrass-build/recipes/recipe.yaml", out / "greengrass-build/artifacts" / COMPONENT / "1.0.0"
        )
        seconds = core.install(COMPONENT)
        yield Installed(core, out, seconds)
    finally:
        core.close()


def _video_config(core: TestCore) -> dict:
    video = write_video(core.root / "clip.avi", synthetic_frames(12))
    video.chmod(0o644)
    return {
        "source": {"kind": "video", "path": str(video), "realtime": False},
        "live": {"max_rate_hz": 0, "change_threshold": None},
    }


def test_clean_install_then_run_publishes_features_over_ipc(installed: Installed) -> None:
    core = installed.core
    venv_python = core.components[COMPONENT].work / "venv/bin/python"
    assert venv_python.exists()
    assert str(ROOT) not in (core.components[COMPONENT].work / "venv/pyvenv.cfg").read_text()
    build_dir = installed.build_dir / "greengrass-build"
    core.deploy(build_dir / "recipes/recipe.yaml", build_dir / "artifacts" / COMPONENT / "1.0.0", _video_config(core))
    core.start(COMPONENT)
    assert core.wait(COMPONENT, timeout=120) == 0, core.log_tail(COMPONENT)
    assert core.ipc is not None
    features = [p for p in core.ipc.published if p.topic == f"visualsearch/{THING}/features"]
    assert len(features) == 12, core.log_tail(COMPONENT)
    assert all(decode(p.payload).device_id == THING for p in features)
    logs = [json.loads(line) for line in core.log_tail(COMPONENT, 100_000).splitlines() if line.startswith("{")]
    assert any(line["msg"] == "edge loop started" for line in logs)


@pytest.mark.parametrize(
    ("left_out", "version"),
    [
        ("model/logs.py", "1.0.1"),  # imported at start-up
        ("model/runtime/onnxruntime_backend.py", "1.0.2"),  # loaded by name from the backend registry
    ],
)
def test_a_module_left_out_of_the_zip_fails_run(
    installed: Installed, left_out: str, version: str, tmp_path: Path
) -> None:
    """The test core finds modules only in the zip: drop one and Run stops with ModuleNotFoundError."""
    core = installed.core
    src = installed.build_dir / "greengrass-build"
    broken = tmp_path / "artifacts"
    shutil.copytree(src / "artifacts" / COMPONENT / "1.0.0", broken)
    zip_path = broken / "EdgeVisualSearch.zip"
    original = src / "artifacts" / COMPONENT / "1.0.0/EdgeVisualSearch.zip"
    with zipfile.ZipFile(original) as good, zipfile.ZipFile(zip_path, "w") as bad:
        for entry in good.infolist():
            if entry.filename != left_out:
                bad.writestr(entry, good.read(entry))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((src / "recipes/recipe.yaml").read_text().replace("1.0.0", version))
    core.deploy(recipe, broken, _video_config(core))
    core.install(COMPONENT)
    core.start(COMPONENT)
    code = core.wait(COMPONENT, timeout=120)
    module = left_out.removesuffix(".py").replace("/", ".")
    assert code != 0
    assert f"ModuleNotFoundError: No module named '{module}'" in core.log_tail(COMPONENT)
