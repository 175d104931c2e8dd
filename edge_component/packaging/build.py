"""``python -m edge_component.packaging.build``: the component under ``greengrass-build/`` (``make component``).

Writes what ``gdk component publish`` (GDK CLI 1.6.2) reads, and GDK calls it as the ``custom_build_command``
through :mod:`edge_component.packaging.gdk_build`:

- ``greengrass-build/recipes/recipe.yaml``: the root ``recipe.yaml`` validated, ComponentName/Publisher from
  gdk-config.json, ComponentVersion = ``--version`` or gdk-config's version (``NEXT_PATCH`` stays literal, as
  GDK's own build leaves it; publish computes the number), artifact URIs
  ``s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/<file>`` (publish rewrites each one whose file it finds);
- ``greengrass-build/artifacts/<name>/<version>/`` (the literal ``NEXT_PATCH`` folder for a NEXT_PATCH
  build: publish uploads from there): ``EdgeVisualSearch.zip``, the model and its sidecar, and with
  ``--wheelhouse`` one ``wheelhouse-linux-<machine>.zip`` per platform.

The zip's code is the import closure of the device's entry points (``edge_component.__main__`` and the Install
step ``edge_component.packaging.device_install``; :mod:`edge_component.packaging.closure`) plus the device pins
``requirements/device/*.txt`` as ``requirements/``, at the zip's root: the nucleus extracts ``NAME.zip`` into
``{artifacts:decompressedPath}/NAME/`` itself. The build refuses device code that imports a third-party
module the device does not install (torch, faiss, ...), a version that is not semver, and a rendered recipe
over GDK's 16,000-byte limit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from edge_component.packaging.closure import ClosureError, import_closure
from edge_component.packaging.validate import SEMVER_RE, check_gdk_config, check_recipe
from edge_component.packaging.wheelhouse import DEVICE_PYTHONS, MACHINES, WheelhouseError, build_wheelhouse, wheel_name
from model.contracts.errors import VisualSearchError

ROOT = Path(__file__).resolve().parents[2]
RECIPE = "recipe.yaml"
ZIP_STEM = "EdgeVisualSearch"
ENTRY_MODULES = ["edge_component.__main__", "edge_component.packaging.device_install"]
DEVICE_REQUIREMENTS = Path("requirements/device")
MAX_RECIPE_BYTES = 16_000
"""GDK's MAX_RECIPE_FILE_SIZE_BYTES (gdk/common/consts.py): publish refuses a larger built recipe."""
ARCHITECTURE_MACHINE = {"amd64": "x86_64", "aarch64": "aarch64"}
# Third-party modules the device code may import: top-level import name → where the device gets it.
DEVICE_IMPORTS = {
    "numpy": "numpy (requirements/device/base.txt; JetPack on a Jetson)",
    "pydantic": "pydantic",
    "yaml": "PyYAML",
    "cv2": "opencv-python-headless (JetPack's OpenCV on a Jetson)",
    "onnxruntime": "onnxruntime / onnxruntime-gpu (the runtime's requirements file)",
    "paho": "paho-mqtt",
    "awsiot": "awsiotsdk",
    "awscrt": "awscrt (awsiotsdk)",
    "openvino": "openvino (runtime: openvino; probed before import)",
    "greengrasssdk": "the Greengrass v1 core (probed before import)",
    "awscam": "the DeepLens image (probed before import)",
}
DEFAULT_MODELS = [
    ROOT / "artifacts/models/efficientnet-lite0-int8.onnx",
    ROOT / ".cache/models/efficientnet-lite0-int8.onnx",
]


class BuildError(VisualSearchError, RuntimeError):
    pass


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def device_code(root: Path) -> list[str]:
    """The files the device imports (relative paths), checked against what the device installs."""
    try:
        closure = import_closure(root, ENTRY_MODULES)
    except ClosureError as exc:
        raise BuildError(f"the device code has a broken import: {exc}") from exc
    foreign = {name: sorted(users) for name, users in closure.third_party.items() if name not in DEVICE_IMPORTS}
    if foreign:
        listed = "; ".join(f"{name} (imported by {', '.join(users)})" for name, users in sorted(foreign.items()))
        raise BuildError(f"the device code imports modules the device does not install: {listed}")
    return closure.relative_files()


def check_version(version: str) -> str:
    if version != "NEXT_PATCH" and not SEMVER_RE.match(version):
        raise BuildError(f"component version {version!r} is not semver: use MAJOR.MINOR.PATCH, e.g. 1.0.0")
    return version


def render_recipe(recipe: dict[str, Any], name: str, version: str, author: str, wheelhouses: list[str]) -> dict:
    """What GDK's build writes: identity filled in, aliases expanded, URIs left for publish to rewrite."""
    rendered: dict[str, Any] = json.loads(json.dumps(recipe))  # deep copy, aliases expanded
    rendered["ComponentName"], rendered["ComponentVersion"], rendered["ComponentPublisher"] = name, version, author
    for manifest in rendered["Manifests"]:
        machine = ARCHITECTURE_MACHINE.get((manifest.get("Platform") or {}).get("architecture", ""))
        if machine and wheel_name(machine) in wheelhouses:
            uri = f"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{wheel_name(machine)}.zip"
            manifest["Artifacts"].append({"Uri": uri, "Unarchive": "ZIP"})
    return rendered


def load_definition(root: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(component name, its gdk-config.json entry, the recipe), refusing either when it breaks a rule."""
    gdk = json.loads((root / "gdk-config.json").read_text())
    recipe = yaml.safe_load((root / RECIPE).read_text())
    errors = check_gdk_config(gdk)
    name = next(iter(gdk.get("component", {"?": {}})))
    errors += [f"{RECIPE} {e}" for e in check_recipe(recipe, name)]
    if errors:
        raise BuildError("invalid component definition:\n  " + "\n  ".join(errors))
    return name, gdk["component"][name], recipe


def write_zip(root: Path, zip_path: Path) -> list[str]:
    code = device_code(root)
    pins = sorted((root / DEVICE_REQUIREMENTS).glob("*.txt"))
    if not pins:
        raise BuildError(f"no device requirements in {root / DEVICE_REQUIREMENTS}")
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in code:
            archive.write(root / relative, relative)
        for path in pins:
            archive.write(path, f"requirements/{path.name}")
    return code


def find_model(model: Path | None) -> tuple[Path, Path]:
    model = model or next((m for m in DEFAULT_MODELS if m.exists()), None)
    if model is None or not model.exists():
        raise BuildError(
            f"model not found ({model or DEFAULT_MODELS[0]}): run `visual-search model export` first or pass --model"
        )
    sidecar = model.with_suffix(".json")
    if not sidecar.exists():
        raise BuildError(f"the model's sidecar {sidecar} is missing")
    return model, sidecar


def build(
    root: Path,
    model: Path | None,
    out: Path,
    version: str | None = None,
    wheelhouse_runtimes: list[str] | None = None,
    wheelhouse_pythons: list[str] | None = None,
) -> dict[str, Path]:
    name, comp, recipe = load_definition(root)
    version = check_version(version or comp["version"])
    model, sidecar = find_model(model)
    artifacts = out / "artifacts" / name / version
    shutil.rmtree(out, ignore_errors=True)
    artifacts.mkdir(parents=True)
    (out / "recipes").mkdir(parents=True)
    paths = {"zip": artifacts / f"{ZIP_STEM}.zip", "artifacts": artifacts, "recipe": out / "recipes" / RECIPE}
    write_zip(root, paths["zip"])
    # The recipe names the model artifact by its conventional file name; copy under that name.
    shutil.copy2(model, artifacts / "efficientnet-lite0-int8.onnx")
    shutil.copy2(sidecar, artifacts / "efficientnet-lite0-int8.json")
    wheelhouses = []
    for machine in MACHINES if wheelhouse_runtimes else ():
        try:
            paths[wheel_name(machine)] = build_wheelhouse(
                root / DEVICE_REQUIREMENTS,
                wheelhouse_runtimes or [],
                machine,
                artifacts,
                wheelhouse_pythons or DEVICE_PYTHONS,
            )
        except WheelhouseError as exc:
            raise BuildError(str(exc)) from exc
        shutil.rmtree(artifacts / f"{wheel_name(machine)}.d")
        wheelhouses.append(wheel_name(machine))
    text = yaml.dump(
        render_recipe(recipe, name, version, comp["author"], wheelhouses), Dumper=_NoAliases, sort_keys=False, width=120
    )
    if len(text.encode()) > MAX_RECIPE_BYTES:
        raise BuildError(f"the built recipe is {len(text.encode())} bytes; GDK publishes at most {MAX_RECIPE_BYTES}")
    paths["recipe"].write_text(text)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_component.packaging.build", description=__doc__)
    parser.add_argument("--model", type=Path, help="ONNX featurizer to ship (default: artifacts/models/…-int8.onnx)")
    parser.add_argument("--out", type=Path, default=ROOT / "greengrass-build")
    parser.add_argument(
        "--version", help="component version, semver MAJOR.MINOR.PATCH (default: gdk-config.json's, e.g. NEXT_PATCH)"
    )
    parser.add_argument(
        "--wheelhouse",
        metavar="RUNTIMES",
        help="also build offline wheelhouse artifacts for these runtimes, e.g. openvino (covers cpu) or openvino,cuda",
    )
    parser.add_argument(
        "--wheelhouse-pythons",
        metavar="VERSIONS",
        help=f"only these device Pythons in the wheelhouse, e.g. 3.10 (default: {','.join(DEVICE_PYTHONS)})",
    )
    args = parser.parse_args(argv)
    runtimes = _csv(args.wheelhouse)
    try:
        paths = build(ROOT, args.model, args.out, args.version, runtimes, _csv(args.wheelhouse_pythons))
    except (BuildError, OSError, ValueError) as exc:
        print(f"component build failed: {exc}", file=sys.stderr)
        return 2
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


def _csv(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


if __name__ == "__main__":
    raise SystemExit(main())
