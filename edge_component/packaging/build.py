"""``python -m edge_component.packaging.build``: the component under ``greengrass-build/`` (``make component``).

Does what ``gdk component build`` does for a custom build, so it runs without the GDK CLI (and GDK calls
it as its ``custom_build_command``): validates gdk-config.json and the recipe, zips the device code with a
pinned requirements file, copies the model and its sidecar, and renders the recipe with the component
name, version, publisher and the artifact URIs filled in.
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

from edge_component.packaging.validate import check_gdk_config, check_recipe

ROOT = Path(__file__).resolve().parents[2]
ZIP_STEM = "EdgeVisualSearch"
# What the device needs: the loop and the model runtime, not export/finetune/cloud code (no torch).
CODE = [
    "edge_component/**/*.py",
    "model/__init__.py",
    "model/contract.py",
    "model/sidecar.py",
    "model/prepare.py",
    "model/featurizer.py",
    "model/runtime/*.py",
    "simulator/__init__.py",
    "simulator/cli.py",
]
DEVICE_PACKAGES = ["numpy", "pydantic", "pyyaml", "opencv-python-headless", "onnxruntime", "paho-mqtt", "awsiotsdk"]
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
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        files = sorted({p for pattern in CODE for p in root.glob(pattern) if "__pycache__" not in p.parts})
        for path in files:
            archive.write(path, f"{ZIP_STEM}/{path.relative_to(root)}")
        archive.writestr(
            f"{ZIP_STEM}/requirements.txt", "\n".join(pinned_requirements(root / "requirements/constraints.txt")) + "\n"
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
    parser.add_argument("--version", help="component version (default: gdk-config.json, NEXT_PATCH → pyproject)")
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
