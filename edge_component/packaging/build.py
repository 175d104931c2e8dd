"""``python -m edge_component.packaging.build``: the component under ``greengrass-build/`` (``make component``).

Does what ``gdk component build`` does for a custom build, so it runs without the GDK CLI (and GDK calls
it as its ``custom_build_command``): validates gdk-config.json and the recipe, zips the device code with a
pinned requirements file, copies the model and its sidecar, and renders the recipe with the component
name, version, publisher and the artifact URIs filled in.

The zip's code is the import closure of the device entry point ``edge_component.__main__``
(:mod:`edge_component.packaging.closure`), at the zip's root: the nucleus extracts ``NAME.zip`` into
``{artifacts:decompressedPath}/NAME/``, so ``python -m edge_component`` runs from that folder. The build
refuses a closure that imports a third-party module the device does not install (torch, faiss, ...).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from edge_component.packaging.closure import ClosureError, import_closure
from edge_component.packaging.validate import SEMVER_RE, check_gdk_config, check_recipe

ROOT = Path(__file__).resolve().parents[2]
ZIP_STEM = "EdgeVisualSearch"
ENTRY_MODULES = ["edge_component.__main__"]
DEVICE_PACKAGES = ["numpy", "pydantic", "pyyaml", "opencv-python-headless", "onnxruntime", "paho-mqtt", "awsiotsdk"]
# Third-party modules the device code may import: top-level import name → where the device gets it.
DEVICE_IMPORTS = {
    "numpy": "numpy",
    "pydantic": "pydantic",
    "yaml": "pyyaml",
    "cv2": "opencv-python-headless",
    "onnxruntime": "onnxruntime",
    "paho": "paho-mqtt",
    "awsiot": "awsiotsdk",
    "awscrt": "awsiotsdk",
    "openvino": "openvino (installed when the device's runtime is OpenVINO; probed before import)",
    "greengrasssdk": "the Greengrass v1 core (probed before import)",
    "awscam": "the DeepLens image (probed before import)",
}
DEFAULT_MODELS = [
    ROOT / "artifacts/models/efficientnet-lite0-int8.onnx",
    ROOT / ".cache/models/efficientnet-lite0-int8.onnx",
]


class BuildError(RuntimeError):
    pass


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def pinned_requirements(constraints: Path) -> list[str]:
    """The device packages with the exact versions of requirements/constraints.txt."""
    pins: dict[str, str] = {}
    for line in constraints.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = line.strip()
    out = []
    for name in DEVICE_PACKAGES:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key not in pins:
            raise BuildError(f"{name} has no pin in {constraints}")
        out.append(pins[key])
    return out


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
    if not SEMVER_RE.match(version):
        raise BuildError(f"component version {version!r} is not semver: use MAJOR.MINOR.PATCH, e.g. 1.0.0")
    return version


def render_recipe(recipe: dict[str, Any], name: str, version: str, author: str, bucket: str | None) -> dict[str, Any]:
    rendered = json.loads(json.dumps(recipe))  # deep copy, aliases expanded
    rendered["ComponentName"], rendered["ComponentVersion"], rendered["ComponentPublisher"] = name, version, author
    for manifest in rendered["Manifests"]:
        for artifact in manifest.get("Artifacts", []):
            uri = artifact["Uri"].replace("COMPONENT_NAME", name).replace("COMPONENT_VERSION", version)
            if bucket:
                uri = uri.replace("BUCKET_NAME", bucket)
            artifact["Uri"] = uri
    return rendered


def build(root: Path, model: Path | None, out: Path, version: str | None = None) -> dict[str, Path]:
    gdk = json.loads((root / "gdk-config.json").read_text())
    recipe = yaml.safe_load((root / "recipes/recipe.yaml").read_text())
    errors = check_gdk_config(gdk)
    name = next(iter(gdk.get("component", {"?": {}})))
    errors += [f"recipe {e}" for e in check_recipe(recipe, name)]
    if errors:
        raise BuildError("invalid component definition:\n  " + "\n  ".join(errors))
    comp = gdk["component"][name]
    if version is None:
        version = comp["version"]
        if version == "NEXT_PATCH":  # GDK asks the cloud for the next patch; offline, use the project version
            project = (root / "pyproject.toml").read_text()
            found = re.search(r'^version\s*=\s*"([^"]+)"', project, re.M)
            version = found.group(1) if found else "1.0.0"
    version = check_version(version)
    model = model or next((m for m in DEFAULT_MODELS if m.exists()), None)
    if model is None or not model.exists():
        raise BuildError(
            f"model not found ({model or DEFAULT_MODELS[0]}): run `visual-search model export` first or pass --model"
        )
    sidecar = model.with_suffix(".json")
    if not sidecar.exists():
        raise BuildError(f"the model's sidecar {sidecar} is missing")
    artifacts = out / "artifacts" / name / version
    recipes = out / "recipes"
    shutil.rmtree(out, ignore_errors=True)
    artifacts.mkdir(parents=True)
    recipes.mkdir(parents=True)

    zip_path = artifacts / f"{ZIP_STEM}.zip"
    code = device_code(root)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        # Entries at the root: the nucleus unzips into {artifacts:decompressedPath}/EdgeVisualSearch/ itself.
        for relative in code:
            archive.write(root / relative, relative)
        archive.writestr(
            "requirements.txt", "\n".join(pinned_requirements(root / "requirements/constraints.txt")) + "\n"
        )
    # The recipe names the model artifact by its conventional file name; copy under that name.
    shutil.copy2(model, artifacts / "efficientnet-lite0-int8.onnx")
    shutil.copy2(sidecar, artifacts / "efficientnet-lite0-int8.json")

    # BUCKET_NAME stays: GDK's publish step substitutes it with {bucket}-{region}-{account}.
    rendered = render_recipe(recipe, name, version, comp["author"], None)
    recipe_path = recipes / "recipe.yaml"
    recipe_path.write_text(yaml.dump(rendered, Dumper=_NoAliases, sort_keys=False, width=120))
    return {"zip": zip_path, "recipe": recipe_path, "artifacts": artifacts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_component.packaging.build", description=__doc__)
    parser.add_argument("--model", type=Path, help="ONNX featurizer to ship (default: artifacts/models/…-int8.onnx)")
    parser.add_argument("--out", type=Path, default=ROOT / "greengrass-build")
    parser.add_argument(
        "--version",
        help="component version, semver MAJOR.MINOR.PATCH (default: gdk-config.json, NEXT_PATCH → pyproject)",
    )
    args = parser.parse_args(argv)
    try:
        paths = build(ROOT, args.model, args.out, args.version)
    except (BuildError, OSError, ValueError) as exc:
        print(f"component build failed: {exc}", file=sys.stderr)
        return 2
    for what, path in paths.items():
        print(f"{what}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
