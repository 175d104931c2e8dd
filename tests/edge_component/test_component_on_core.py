"""The built component on the test core, from a clean install, wired to the local cloud stand-ins.

One core per module: ``make component``'s output deployed to :class:`TestCore`, Install run for real (a fresh
venv from the host's python3 and the zip's own device pins, no checkout and no development venv on any path),
PublishToIoTCore forwarded to a real mosquitto, the rule bridge calling the real search into a real redis-server.
The tests then redeploy onto that core as deployments would, so the work folder (and its venv) carries over.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from edge_component.packaging.build import ROOT, build
from model.contracts.wire import decode
from simulator.stack.bridge import RuleBridge
from simulator.stack.processes import MosquittoProcess, RedisProcess
from tests.edge_component.conftest import Collector, write_video
from tests.edge_component.nucleus_core import LifecycleError, RunWith, TestCore
from tests.simulator.conftest import TinyCatalog, tiny_catalog  # noqa: F401 (session fixture used here)

COMPONENT = "com.example.EdgeVisualSearch"
THING = "cam-core"
PROBE = """
import json, sys
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS
ipc = GreengrassCoreIPCClientV2()
out = {}
for topic in sys.argv[1:]:
    try:
        ipc.publish_to_iot_core(topic_name=topic, qos=QOS.AT_LEAST_ONCE, payload=b"{}")
        out[topic] = "ok"
    except Exception as exc:
        out[topic] = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
print(json.dumps(out))
"""


def core_pip_cache(run_with: RunWith) -> dict[str, str]:
    """The nucleus's environment for pip: the run-with user's own cache, or a shared one that user owns.

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
class Stack:
    core: TestCore
    build_dir: Path
    install_s: float
    mosquitto: MosquittoProcess
    redis: redis.Redis
    catalog: TinyCatalog
    frames_truth: list[str]

    @property
    def recipe(self) -> Path:
        return self.build_dir / "recipes/recipe.yaml"

    @property
    def artifacts(self) -> Path:
        return self.build_dir / "artifacts" / COMPONENT / "1.0.0"

    def probe(self, *topics: str) -> dict[str, str]:
        """Publish on ``topics`` as the component (its SVCUID, user and venv) with the real IPC client."""
        python = str(self.core.components[COMPONENT].work / "venv/bin/python")
        result = self.core.exec_as(COMPONENT, [python, "-c", PROBE, *topics])
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_catalog: TinyCatalog) -> Iterator[Stack]:  # noqa: F811
    root = tmp_path_factory.mktemp("core-stack")
    build(ROOT, tiny_catalog.model, root / "greengrass-build", version="1.0.0")
    broker = MosquittoProcess(workdir=root / "mosquitto").start()
    store = RedisProcess(workdir=root / "redis").start()
    settings = CloudSettings.build(index_dir=str(tiny_catalog.index_dir), redis_url=store.url, min_score=0.5)
    service = SearchService(settings)
    bridge = RuleBridge(service.handle_feature_event, service.handle_status_event, port=broker.port, client_id="rule")
    bridge.start()
    run_with = RunWith.default()
    core = TestCore(thing_name=THING, nucleus_env=core_pip_cache(run_with), run_with=run_with)
    try:
        core.connect_mqtt("127.0.0.1", broker.port)
        truth = [item for item in tiny_catalog.ids for _ in range(3)]
        video = write_video(core.root / "catalog.avi", [tiny_catalog.images[item] for item in truth])
        video.chmod(0o644)
        source = {"kind": "video", "path": str(video), "realtime": False}
        merge = {"source": source, "live": {"max_rate_hz": 0, "change_threshold": None}}
        core.deploy(
            root / "greengrass-build/recipes/recipe.yaml", root / f"greengrass-build/artifacts/{COMPONENT}/1.0.0", merge
        )
        seconds = core.install(COMPONENT)
        yield Stack(
            core, root / "greengrass-build", seconds, broker, redis.Redis(store.host, store.port), tiny_catalog, truth
        )
    finally:
        core.close()
        bridge.stop()
        store.stop()
        broker.stop()


def _records(stack: Stack) -> list[dict]:
    return [json.loads(r) for r in stack.redis.lrange(f"visualsearch:matches:{THING}", 0, -1)]


def test_clean_install_runs_and_its_matches_reach_redis(stack: Stack) -> None:
    core = stack.core
    work = core.components[COMPONENT].work
    report = json.loads((work / "install.json").read_text())
    assert report["runtime"] == ("openvino" if platform.machine() == "x86_64" else "cpu")  # what auto picks here
    assert report["requested"] == "auto" and report["source"] == "package index"
    assert str(ROOT) not in (work / "venv/pyvenv.cfg").read_text()
    print(f"Install (clean venv, package index): {stack.install_s:.1f} s")

    collector = Collector("127.0.0.1", stack.mosquitto.port, "visualsearch/#")
    try:
        core.start(COMPONENT)
        assert core.wait_state(COMPONENT, {"FINISHED", "BROKEN"}, timeout=120) == "FINISHED", core.log_tail(COMPONENT)
        wanted = len(stack.frames_truth)
        assert collector.wait_for(lambda m: sum(t.endswith("/features") for t, _ in m) >= wanted)
        statuses = collector.statuses()
    finally:
        collector.close()
    deadline = time.monotonic() + 20
    while len(_records(stack)) < len(stack.frames_truth) and time.monotonic() < deadline:
        time.sleep(0.1)
    records = sorted(_records(stack), key=lambda r: r["seq"])
    assert len(records) == len(stack.frames_truth)
    assert [r["matches"][0]["id"] for r in records] == stack.frames_truth  # each frame found its catalog item
    assert all(r["device_id"] == THING for r in records)
    assert statuses and statuses[0]["installed_runtime"]["runtime"] == report["runtime"]


def _features(collector: Collector, after: int = 0) -> list:
    return [decode(p) for p in collector.payloads()[after:]]


def test_a_redeploy_with_a_configuration_change_takes_effect(stack: Stack) -> None:
    """Restart-only settings restart Run (they are in its Setenv); live ones arrive as update events."""
    core = stack.core
    looping = {"kind": "video", "path": str(core.root / "catalog.avi"), "loop": True, "realtime": True, "fps": 10}
    collector = Collector("127.0.0.1", stack.mosquitto.port, f"visualsearch/{THING}/features")
    try:
        assert core.deploy(stack.recipe, stack.artifacts, merge={"source": looping}) == "restart"
        core.start(COMPONENT)
        assert collector.wait_for(lambda m: len(m) >= 3), core.log_tail(COMPONENT)
        first_pid = core.components[COMPONENT].process.pid  # type: ignore[union-attr]
        assert {f.dtype for f in _features(collector)} == {"float16"}

        assert core.deploy(stack.recipe, stack.artifacts, merge={"publish": {"dtype": "float32"}}) == "restart"
        seen = len(collector.payloads())
        assert collector.wait_for(lambda m: len(m) >= seen + 3)
        assert core.components[COMPONENT].process.pid != first_pid  # type: ignore[union-attr]
        assert _features(collector, seen + 1)[-1].dtype == "float32"
        pid = core.components[COMPONENT].process.pid  # type: ignore[union-attr]

        assert core.deploy(stack.recipe, stack.artifacts, merge={"live": {"max_rate_hz": 1.5}}) == "notify"
        _wait_log(core, '"max_rate_hz":1.5')
        assert core.components[COMPONENT].process.pid == pid  # type: ignore[union-attr]

        # reset: /publish back to the recipe's defaults (float16), which restarts Run again
        assert core.deploy(stack.recipe, stack.artifacts, reset=["/publish"]) == "restart"
        assert core.components[COMPONENT].configuration["publish"]["dtype"] == "float16"
        seen = len(collector.payloads())
        assert collector.wait_for(lambda m: len(m) >= seen + 2)
        assert _features(collector, seen + 1)[-1].dtype == "float16"
    finally:
        core.stop(COMPONENT)
        collector.close()


def _wait_log(core: TestCore, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in core.log_tail(COMPONENT, 200_000):
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{core.log_tail(COMPONENT)}"
        time.sleep(0.1)


OWN = [f"visualsearch/{THING}/features", f"visualsearch/{THING}/status", f"visualsearch/{THING}/thumbnail"]
NOT_AUTHORIZED = "UnauthorizedError: Not Authorized"


def test_publishes_outside_the_allowed_topics_are_refused_on_a_default_core(stack: Stack) -> None:
    core = stack.core
    core.deploy(
        stack.recipe,
        stack.artifacts,
        reset=["/accessControl"],
        nucleus_merge={"interpolateComponentConfiguration": False},
    )
    result = stack.probe(*OWN, f"visualsearch/{THING}/debug", "other/topic", f"visualsearch/{THING}/features/x")
    assert result == {
        **dict.fromkeys(OWN, "ok"),
        f"visualsearch/{THING}/debug": NOT_AUTHORIZED,
        "other/topic": NOT_AUTHORIZED,
        f"visualsearch/{THING}/features/x": NOT_AUTHORIZED,
    }


def test_thing_scoped_policy_needs_interpolation_on(stack: Stack) -> None:
    """recipes/deployment-thing-scoped.json turns interpolation on and narrows the policy to the thing name;
    the same policy on a core without interpolation refuses even the component's own topics."""
    core = stack.core
    document = json.loads((ROOT / "recipes/deployment-thing-scoped.json").read_text())
    try:
        core.deploy_document(document, stack.recipe, stack.artifacts)
        result = stack.probe(*OWN, "visualsearch/other-thing/features")
        assert result == {**dict.fromkeys(OWN, "ok"), "visualsearch/other-thing/features": NOT_AUTHORIZED}

        document["components"]["aws.greengrass.Nucleus"]["configurationUpdate"]["merge"] = json.dumps(
            {"interpolateComponentConfiguration": False}
        )
        core.deploy_document(document, stack.recipe, stack.artifacts)
        assert stack.probe(*OWN) == dict.fromkeys(OWN, NOT_AUTHORIZED)
    finally:
        core.deploy(
            stack.recipe,
            stack.artifacts,
            reset=["/accessControl"],
            nucleus_merge={"interpolateComponentConfiguration": False},
        )


@pytest.mark.parametrize(
    ("left_out", "version", "failing_step"),
    [
        ("model/logs.py", "1.0.1", "Install"),  # the Install step's own import
        ("model/runtime/onnxruntime_backend.py", "1.0.2", "Run"),  # loaded by name from the backend registry
    ],
)
def test_a_module_left_out_of_the_zip_breaks_the_component(
    stack: Stack, tmp_path: Path, left_out: str, version: str, failing_step: str
) -> None:
    """The test core finds modules only in the zip: drop one and the step that imports it fails with
    ModuleNotFoundError until the component is BROKEN (3 errors)."""
    core = stack.core
    broken = tmp_path / "artifacts"
    shutil.copytree(stack.artifacts, broken)
    with (
        zipfile.ZipFile(stack.artifacts / "EdgeVisualSearch.zip") as good,
        zipfile.ZipFile(broken / "EdgeVisualSearch.zip", "w") as bad,
    ):
        for entry in good.infolist():
            if entry.filename != left_out:
                bad.writestr(entry, good.read(entry))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(stack.recipe.read_text().replace("ComponentVersion: 1.0.0", f"ComponentVersion: {version}"))
    assert core.deploy(recipe, broken) == "reinstall"
    if failing_step == "Install":
        with pytest.raises(LifecycleError, match="BROKEN after Install exited 1; Install exited 1; Install exited 1"):
            core.install(COMPONENT)
    else:
        core.install(COMPONENT)  # same pins: the venv is kept (Install is idempotent)
        core.start(COMPONENT)
        assert core.wait_state(COMPONENT, {"FINISHED", "BROKEN"}, timeout=120) == "BROKEN"
    module = left_out.removesuffix(".py").replace("/", ".")
    log = core.log_tail(COMPONENT, 200_000).split(f"--- {failing_step} ---")
    assert sum(f"ModuleNotFoundError: No module named '{module}'" in part for part in log[-3:]) == 3
