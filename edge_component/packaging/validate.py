"""Checks for ``gdk-config.json`` (GDK CLI schema rules) and the component recipe (docs: greengrass.md).

Each problem is reported as ``path: reason``; an empty list means valid. Used by the build (which refuses
to write a component that breaks a rule) and by the tests.
"""

from __future__ import annotations

import re
from typing import Any

from model.contracts.topics import TOPIC_PREFIX

NAME_RE = re.compile(r"^[a-zA-Z0-9\-_.]+$")
SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
BUILD_SYSTEMS = {"zip", "maven", "gradle", "gradlew", "custom"}
PUBLISH_OP = "aws.greengrass#PublishToIoTCore"
OWN_TOPIC_RE = re.compile(rf"^{TOPIC_PREFIX}/\+/(features|status|thumbnail)$")
NUCLEUS = "aws.greengrass.Nucleus"
MIN_NUCLEUS = (2, 6, 0)
"""MQTT wildcards in IPC authorization resources (authorization/WildcardTrie.java MQTT_STYLE) start in v2.6.0."""


def check_gdk_config(doc: Any) -> list[str]:
    errors: list[str] = []
    if not isinstance(doc, dict):
        return ["(top level): must be an object"]
    for key in doc:
        if key not in ("component", "gdk_version"):
            errors.append(f"{key}: unknown top-level key")
    version = doc.get("gdk_version")
    if not isinstance(version, str) or not SEMVER_RE.match(version):
        errors.append("gdk_version: required, a semver string such as 1.3.0")
    components = doc.get("component")
    if not isinstance(components, dict) or len(components) != 1:
        errors.append("component: required, an object with exactly one key (the component name)")
        return errors
    name, comp = next(iter(components.items()))
    where = f"component.{name}"
    if not NAME_RE.match(name):
        errors.append(f"{where}: component name must match {NAME_RE.pattern}")
    if not isinstance(comp, dict):
        return [*errors, f"{where}: must be an object"]
    for key in ("author", "version", "build", "publish"):
        if key not in comp:
            errors.append(f"{where}.{key}: required")
    comp_version = comp.get("version")
    if "version" in comp and not (
        isinstance(comp_version, str) and (comp_version == "NEXT_PATCH" or SEMVER_RE.match(comp_version))
    ):
        errors.append(f"{where}.version: must be semver or NEXT_PATCH")
    build = comp.get("build")
    if isinstance(build, dict):
        system = build.get("build_system")
        if system not in BUILD_SYSTEMS:
            errors.append(f"{where}.build.build_system: must be one of {', '.join(sorted(BUILD_SYSTEMS))}")
        if system == "custom":
            command = build.get("custom_build_command")
            ok = (isinstance(command, str) and command.strip()) or (
                isinstance(command, list) and command and all(isinstance(c, str) for c in command)
            )
            if not ok:
                errors.append(f"{where}.build.custom_build_command: required for custom builds (string or list)")
        options = build.get("options", {})
        if system == "zip" and isinstance(options, dict):
            if "excludes" in options and not isinstance(options["excludes"], list):
                errors.append(f"{where}.build.options.excludes: must be a list of globs")
            if "zip_name" in options and not isinstance(options["zip_name"], str):
                errors.append(f"{where}.build.options.zip_name: must be a string")
    elif "build" in comp:
        errors.append(f"{where}.build: must be an object")
    publish = comp.get("publish")
    if isinstance(publish, dict):
        if not isinstance(publish.get("bucket"), str) or not publish.get("bucket"):
            errors.append(f"{where}.publish.bucket: required")
        if "region" in publish and not isinstance(publish["region"], str):
            errors.append(f"{where}.publish.region: must be a string")
    elif "publish" in comp:
        errors.append(f"{where}.publish: must be an object")
    return errors


def check_recipe(recipe: Any, component_name: str | None = None) -> list[str]:
    errors: list[str] = []
    if not isinstance(recipe, dict):
        return ["(top level): must be a mapping"]
    if recipe.get("RecipeFormatVersion") != "2020-01-25":
        errors.append("RecipeFormatVersion: must be '2020-01-25'")
    name = recipe.get("ComponentName")
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors.append("ComponentName: required, [a-zA-Z0-9-_.]+")
    elif component_name and name != component_name:
        errors.append(f"ComponentName: {name!r} differs from gdk-config.json's {component_name!r}")
    version = recipe.get("ComponentVersion")
    if not isinstance(version, str) or not (SEMVER_RE.match(version) or version == "NEXT_PATCH"):
        errors.append("ComponentVersion: required, semver (or NEXT_PATCH in a GDK build, which publish replaces)")
    errors += _check_nucleus_dependency(recipe.get("ComponentDependencies"))
    config = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration")
    if not isinstance(config, dict):
        errors.append("ComponentConfiguration.DefaultConfiguration: required")
        config = {}
    errors += _check_access_control(config.get("accessControl"), name if isinstance(name, str) else "")
    manifests = recipe.get("Manifests")
    if not isinstance(manifests, list) or not manifests:
        return [*errors, "Manifests: required, a non-empty list"]
    platforms = set()
    for i, manifest in enumerate(manifests):
        where = f"Manifests[{i}]"
        platform = manifest.get("Platform") or {}
        platforms.add((platform.get("os"), platform.get("architecture")))
        lifecycle = manifest.get("Lifecycle") or {}
        for phase in ("Install", "Run"):
            step = lifecycle.get(phase)
            script = step.get("Script") if isinstance(step, dict) else step
            if not isinstance(script, str) or not script.strip():
                errors.append(f"{where}.Lifecycle.{phase}: required script")
        run = lifecycle.get("Run")
        run_script = run.get("Script", "") if isinstance(run, dict) else str(run or "")
        if "-m edge_component run" not in run_script:
            errors.append(f"{where}.Lifecycle.Run: must call the device entry point `python -m edge_component run`")
        install = lifecycle.get("Install")
        if isinstance(install, dict) and "edge_component.packaging.device_install" not in install.get("Script", ""):
            errors.append(f"{where}.Lifecycle.Install: must run edge_component.packaging.device_install")
        artifacts = manifest.get("Artifacts")
        if not isinstance(artifacts, list) or not artifacts:
            errors.append(f"{where}.Artifacts: required")
            continue
        uris = [a.get("Uri", "") for a in artifacts if isinstance(a, dict)]
        for j, uri in enumerate(uris):
            if not isinstance(uri, str) or not uri.startswith("s3://"):
                errors.append(f"{where}.Artifacts[{j}].Uri: must be an s3:// URI")
        if not any(a.get("Unarchive") == "ZIP" for a in artifacts if isinstance(a, dict)):
            errors.append(f"{where}.Artifacts: the code zip must have Unarchive: ZIP")
        if not any(str(u).endswith(".onnx") for u in uris):
            errors.append(f"{where}.Artifacts: the model (.onnx) must be an artifact")
    for wanted in (("linux", "amd64"), ("linux", "aarch64")):
        if wanted not in platforms:
            errors.append(f"Manifests: no manifest for {wanted[0]}/{wanted[1]}")
    return errors


def _check_access_control(acl: Any, component: str) -> list[str]:
    where = "ComponentConfiguration.DefaultConfiguration.accessControl"
    if not isinstance(acl, dict):
        return [f"{where}: required (PublishToIoTCore needs an IPC policy)"]
    errors: list[str] = []
    proxy = acl.get("aws.greengrass.ipc.mqttproxy")
    if not isinstance(proxy, dict) or not proxy:
        return [f"{where}.aws.greengrass.ipc.mqttproxy: required"]
    for policy_id, policy in proxy.items():
        pwhere = f"{where}.aws.greengrass.ipc.mqttproxy.{policy_id}"
        if component and not str(policy_id).startswith(f"{component}:mqttproxy:"):
            errors.append(f"{pwhere}: policy id must be '{component}:mqttproxy:<n>'")
        if not isinstance(policy, dict):
            errors.append(f"{pwhere}: must be a mapping")
            continue
        if policy.get("operations") != [PUBLISH_OP]:
            errors.append(f"{pwhere}.operations: must be exactly [{PUBLISH_OP}]")
        resources = policy.get("resources")
        if not isinstance(resources, list) or not resources:
            errors.append(f"{pwhere}.resources: required")
            continue
        for resource in resources:
            if isinstance(resource, str) and "{iot:thingName}" in resource:
                errors.append(
                    f"{pwhere}.resources: {resource!r} stays literal on a core without "
                    "interpolateComponentConfiguration (the default), so every publish would be refused; use "
                    f"{TOPIC_PREFIX}/+/... here and recipes/deployment-thing-scoped.json to narrow it"
                )
            elif not isinstance(resource, str) or not OWN_TOPIC_RE.match(resource):
                errors.append(
                    f"{pwhere}.resources: {resource!r} is not one of this component's topics "
                    f"({TOPIC_PREFIX}/+/features|status|thumbnail)"
                )
    return errors


def _check_nucleus_dependency(dependencies: Any) -> list[str]:
    where = f"ComponentDependencies.{NUCLEUS}"
    wanted = ".".join(map(str, MIN_NUCLEUS))
    dependency = (dependencies or {}).get(NUCLEUS) if isinstance(dependencies, dict) else None
    if not isinstance(dependency, dict):
        return [f"{where}: required (the accessControl wildcards need nucleus >= {wanted})"]
    errors = []
    floor = re.search(r">=\s*(\d+)\.(\d+)\.(\d+)", str(dependency.get("VersionRequirement", "")))
    if floor is None or tuple(int(g) for g in floor.groups()) < MIN_NUCLEUS:
        errors.append(f"{where}.VersionRequirement: must require >= {wanted}")
    if dependency.get("DependencyType") != "SOFT":
        errors.append(
            f"{where}.DependencyType: SOFT (HARD would restart this component whenever the nucleus changes state)"
        )
    return errors
