"""The test core itself: each rule it claims from the nucleus, on small shell-script components (no pip).

These pin the stand-in's behaviour so that the component tests on it (test_component_on_core.py) mean what they
say; each rule's source is cited in :mod:`tests.edge_component.nucleus_core` and :mod:`tests.edge_component.nucleus_auth`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.edge_component.nucleus_auth import Authorizer, resource_pattern
from tests.edge_component.nucleus_core import LifecycleError, TestCore
from tests.wait import wait_for

NAME = "com.example.Probe"


def make_component(tmp: Path, lifecycle: dict[str, Any], config: dict[str, Any], version: str = "1.0.0") -> Path:
    """A recipe + artifacts folder: ``app.zip`` (files at its root) and a plain ``data.txt``."""
    artifacts = tmp / f"artifacts-{version}"
    artifacts.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(artifacts / "app.zip", "w") as zf:
        zf.writestr("main.sh", "echo from-zip\n")
        zf.writestr("lib/helper.txt", "helper\n")
    (artifacts / "data.txt").write_text("data\n")
    recipe = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": NAME,
        "ComponentVersion": version,
        "ComponentConfiguration": {"DefaultConfiguration": config},
        "Manifests": [
            {
                "Platform": {"os": "linux"},
                "Lifecycle": lifecycle,
                "Artifacts": [
                    {"Uri": f"s3://b/{NAME}/{version}/app.zip", "Unarchive": "ZIP"},
                    {"Uri": f"s3://b/{NAME}/{version}/data.txt"},
                ],
            }
        ],
    }
    path = tmp / f"recipe-{version}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def core() -> Iterator[TestCore]:
    test_core = TestCore(thing_name="probe-thing")
    try:
        yield test_core
    finally:
        test_core.close()


def run_once(core: TestCore, script: str, config: dict[str, Any] | None = None, tmp: Path | None = None) -> str:
    assert tmp is not None
    recipe = make_component(tmp, {"Run": script}, config or {})
    core.deploy(recipe, tmp / "artifacts-1.0.0")
    core.start(NAME)
    assert core.wait_state(NAME, {"FINISHED", "BROKEN"}, timeout=30) == "FINISHED", core.log_tail(NAME)
    return core.log_tail(NAME).split("--- Run ---\n")[-1]


def test_a_zip_artifact_lands_in_a_folder_named_after_it_with_its_root_inside(core: TestCore, tmp_path: Path) -> None:
    out = run_once(core, "sh {artifacts:decompressedPath}/app/main.sh; cat {artifacts:path}/data.txt", tmp=tmp_path)
    assert out.splitlines() == ["from-zip", "data"]
    component = core.components[NAME]
    assert component.artifacts == core.root / f"packages/artifacts/{NAME}/1.0.0"
    assert component.decompressed == core.root / f"packages/artifacts-unarchived/{NAME}/1.0.0"
    assert (component.decompressed / "app/lib/helper.txt").read_text() == "helper\n"
    assert component.work == core.root / f"work/{NAME}" and oct(component.work.stat().st_mode & 0o777) == "0o700"


def test_a_zip_entry_outside_its_folder_fails_the_deployment(core: TestCore, tmp_path: Path) -> None:
    recipe = make_component(tmp_path, {"Run": "true"}, {})
    with zipfile.ZipFile(tmp_path / "artifacts-1.0.0/app.zip", "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(LifecycleError, match="Entry is outside of the target dir"):
        core.deploy(recipe, tmp_path / "artifacts-1.0.0")


def test_recipe_variables_in_lifecycle(core: TestCore, tmp_path: Path) -> None:
    script = "echo {iot:thingName} {work:path} {kernel:rootPath}; echo '{configuration:/a/b}'; echo '{configuration:/a}'; echo '{nope:x}' '{configuration:/missing}'"
    out = run_once(core, script, {"a": {"b": 7}}, tmp=tmp_path).splitlines()
    assert out == [
        f"probe-thing {core.root}/work/{NAME} {core.root}",
        "7",
        '{"b":7}',
        "{nope:x} {configuration:/missing}",
    ]


@pytest.mark.parametrize("interpolate", [False, True])
def test_configuration_is_interpolated_only_with_the_nucleus_option(tmp_path: Path, interpolate: bool) -> None:
    core = TestCore(thing_name="probe-thing", interpolate_component_configuration=interpolate)
    try:
        config = {"topic": "t/{iot:thingName}/x", "ref": "{configuration:/topic}"}
        core.deploy(make_component(tmp_path, {"Run": "true"}, config), tmp_path / "artifacts-1.0.0")
        resolved = core.components[NAME].configuration
    finally:
        core.close()
    assert resolved["topic"] == ("t/probe-thing/x" if interpolate else "t/{iot:thingName}/x")
    assert resolved["ref"] == "{configuration:/topic}"  # system parameters only, never configuration


def test_scripts_run_as_the_run_with_user_in_the_nucleus_environment_only(core: TestCore, tmp_path: Path) -> None:
    os.environ["PYTHONPATH"] = "/leaked/from/the/test/process"
    try:
        out = run_once(core, "id -u; pwd; env | sort", tmp=tmp_path).splitlines()
    finally:
        del os.environ["PYTHONPATH"]
    assert out[0] == str(core.run_with.uid) and out[1] == str(core.components[NAME].work)
    env = dict(line.split("=", 1) for line in out[2:] if "=" in line)
    assert env["AWS_IOT_THING_NAME"] == "probe-thing" and env["SVCUID"] and env["AWS_REGION"] == "us-east-1"
    assert env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] == str(core.root / "ipc.socket")
    assert env["HOME"] == core.run_with.home
    assert not {"PYTHONPATH", "VIRTUAL_ENV", "PYTEST_CURRENT_TEST"} & set(env)
    if os.geteuid() == 0:
        assert core.run_with.uid != 0  # never root for the component's processes


def test_setenv_applies_lifecycle_level_then_step_level(core: TestCore, tmp_path: Path) -> None:
    lifecycle = {
        "Setenv": {"A": "life", "B": "life"},
        "Run": {"Script": "echo $A $B", "Setenv": {"B": "{iot:thingName}"}},
    }
    core.deploy(make_component(tmp_path, lifecycle, {}), tmp_path / "artifacts-1.0.0")
    core.start(NAME)
    core.wait_state(NAME, {"FINISHED"}, timeout=30)
    assert core.log_tail(NAME).splitlines()[-1] == "life probe-thing"


def test_install_that_outlives_its_timeout_is_retried_then_broken(core: TestCore, tmp_path: Path) -> None:
    recipe = make_component(tmp_path, {"Install": {"Script": "sleep 30", "Timeout": 1}, "Run": "true"}, {})
    core.deploy(recipe, tmp_path / "artifacts-1.0.0")
    with pytest.raises(LifecycleError, match="BROKEN after Install timed out after 1 s; Install timed out"):
        core.install(NAME)
    assert core.components[NAME].state == "BROKEN"


def test_run_that_keeps_failing_is_restarted_then_broken(core: TestCore, tmp_path: Path) -> None:
    core.deploy(make_component(tmp_path, {"Run": "echo attempt; exit 3"}, {}), tmp_path / "artifacts-1.0.0")
    core.start(NAME)
    assert core.wait_state(NAME, {"BROKEN", "FINISHED"}, timeout=30) == "BROKEN"
    assert core.log_tail(NAME).count("attempt") == 3


def test_stop_kills_what_ignores_sigterm(core: TestCore, tmp_path: Path) -> None:
    core.deploy(
        make_component(
            tmp_path, {"Run": "trap 'echo got TERM' TERM; echo trapped; while true; do sleep 0.1; done"}, {}
        ),
        tmp_path / "artifacts-1.0.0",
    )
    core.start(NAME)
    core.wait_state(NAME, {"RUNNING"}, timeout=10)
    wait_for(lambda: "trapped" in core.log_tail(NAME), 10, "the shell to install its trap")
    assert core.stop(NAME) == -9  # SIGTERM was trapped and ignored: SIGKILL after the grace period
    assert "got TERM" in core.log_tail(NAME)


def test_deployment_configuration_reset_then_defaults_then_merge(core: TestCore, tmp_path: Path) -> None:
    first = make_component(tmp_path, {"Run": "true"}, {"rate": 1, "topics": ["a"], "keep": "x"})
    core.deploy(first, tmp_path / "artifacts-1.0.0", merge={"rate": 5})
    assert core.components[NAME].configuration == {"rate": 5, "topics": ["a"], "keep": "x"}
    # a new version's changed defaults do not replace what the core has; new keys are added
    second = make_component(tmp_path, {"Run": "true"}, {"rate": 2, "topics": ["b"], "added": True}, version="1.0.1")
    core.deploy(second, tmp_path / "artifacts-1.0.1")
    assert core.components[NAME].configuration == {"rate": 5, "topics": ["a"], "keep": "x", "added": True}
    core.deploy(second, tmp_path / "artifacts-1.0.1", reset=["/topics", "/keep"])
    assert core.components[NAME].configuration == {"rate": 5, "topics": ["b"], "added": True}
    core.deploy(second, tmp_path / "artifacts-1.0.1", reset=[""], merge={"rate": 9})
    assert core.components[NAME].configuration == {"rate": 9, "topics": ["b"], "added": True}


def test_what_a_deployment_makes_the_nucleus_do(core: TestCore, tmp_path: Path) -> None:
    lifecycle = {
        "Install": "echo install {configuration:/runtime}",
        "Run": {"Script": "sleep 60", "Setenv": {"S": "{configuration:/src}"}},
    }
    recipe = make_component(tmp_path, lifecycle, {"runtime": "cpu", "src": "a", "live": 1})
    artifacts = tmp_path / "artifacts-1.0.0"
    assert core.deploy(recipe, artifacts) == "new"
    core.install(NAME)
    core.start(NAME)
    pid = core.components[NAME].process.pid  # type: ignore[union-attr]
    assert core.deploy(recipe, artifacts, merge={"live": 2}) == "notify"
    assert core.components[NAME].process.pid == pid  # type: ignore[union-attr]
    assert core.deploy(recipe, artifacts, merge={"src": "b"}) == "restart"
    assert core.components[NAME].process.pid != pid  # type: ignore[union-attr]
    assert core.deploy(recipe, artifacts, merge={"runtime": "openvino"}) == "reinstall"
    assert core.log_tail(NAME).count("install ") == 2 and "install openvino" in core.log_tail(NAME)
    assert core.deploy(recipe, artifacts) == "none"
    core.stop(NAME)


@pytest.mark.parametrize(
    ("resource", "topic", "allowed"),
    [
        ("visualsearch/+/features", "visualsearch/cam-1/features", True),
        ("visualsearch/+/features", "visualsearch/a/b/features", False),
        ("visualsearch/+/features", "visualsearch/cam-1/status", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/#", "ab", False),
        ("a*c", "a/b/c", True),  # the glob crosses levels
        ("a+b", "a+b", True),  # '+' inside a level is a literal
        ("a+b", "axb", False),
        ("t/{iot:thingName}/f", "t/cam-1/f", False),  # an uninterpolated variable is literal text
        ("x${*}", "x*", True),
        ("x${*}", "xy", False),
    ],
)
def test_authorization_matches_resources_mqtt_style(resource: str, topic: str, allowed: bool) -> None:
    assert bool(resource_pattern(resource).fullmatch(topic)) is allowed


def test_authorization_is_per_component_and_operation() -> None:
    auth = Authorizer()
    policy = {"p1": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["own/+", "bad?"]}}
    auth.load(NAME, {"accessControl": {"aws.greengrass.ipc.mqttproxy": policy}})
    service = "aws.greengrass.ipc.mqttproxy"
    assert auth.is_authorized(service, NAME, "aws.greengrass#PublishToIoTCore", "own/x")
    assert not auth.is_authorized(service, "other.Component", "aws.greengrass#PublishToIoTCore", "own/x")
    assert not auth.is_authorized(service, NAME, "aws.greengrass#SubscribeToIoTCore", "own/x")
    assert not auth.is_authorized(service, NAME, "aws.greengrass#PublishToIoTCore", "bad?")
    assert any("invalid character: '?'" in s for s in auth.skipped)
    auth.load(NAME, {"accessControl": {}})  # a deployment that removes the policy removes the permission
    assert not auth.is_authorized(service, NAME, "aws.greengrass#PublishToIoTCore", "own/x")


def test_ipc_socket_is_reachable_by_the_run_with_user(core: TestCore, tmp_path: Path) -> None:
    out = run_once(core, "test -w $AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT && echo writable", tmp=tmp_path)
    assert out.strip() == "writable"
    assert json.loads(json.dumps(core.components[NAME].configuration)) == {}
