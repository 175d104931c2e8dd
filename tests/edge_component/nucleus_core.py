"""A test Greengrass core: deploys, installs and runs a built component the way the nucleus does, as real processes.

Each rule follows the Greengrass v2 documentation or the nucleus source
(github.com/aws-greengrass/aws-greengrass-nucleus, ``src/main/java/com/aws/greengrass/...``):

- **Layout** (``util/NucleusPaths.java``, ``componentmanager/ComponentStore.java``): artifacts in
  ``<root>/packages/artifacts/<name>/<version>/`` = ``{artifacts:path}``; a ZIP artifact (``Unarchive: ZIP``) is
  extracted into ``<root>/packages/artifacts-unarchived/<name>/<version>/<archive name without .zip>/``
  (``componentmanager/ComponentManager.java`` ``unarchiveArtifactPath(id, getFileName(file))``,
  ``componentmanager/Unarchiver.java``: an entry outside the folder fails, a file is written only when missing or of
  another size); ``{artifacts:decompressedPath}`` is the ``<version>`` folder; ``{work:path}`` = ``<root>/work/<name>/``
  (0700), the scripts' working directory. A local recipe has no digest, so an artifact already on disk is kept
  (``componentmanager/builtins/ArtifactDownloader.java`` ``downloadRequired``): a changed build needs a new version.
- **Ownership and modes** (``lifecyclemanager/RunWithPathOwnershipHandler.java``, ``util/Permissions.java``,
  ``componentmanager/models/Permission.java``): files under the artifact folders and the work folder belong to the
  run-with user; artifact files are 0440 (``Permission: Read: OWNER``, the default), directories 0755.
- **Recipe variables** (``componentmanager/KernelConfigResolver.java``): ``{namespace:key}`` matched by
  ``\\{([.\\w-]+):([^:}]*)}``; ``artifacts`` (path, decompressedPath), ``work`` (path), ``kernel`` (rootPath),
  ``iot`` (thingName), ``configuration`` (a JSON pointer; a container value becomes its JSON text). Lifecycle
  scripts and their Setenv are always interpolated; the component's *configuration* (``accessControl``
  included) only when the nucleus option ``interpolateComponentConfiguration`` is true (the deployment's
  nucleus configuration wins over the device's, ``shouldInterpolateConfiguration``), and then with system
  parameters only (``interpolateSystemParametersOnly``). Unknown placeholders stay as they are.
- **Configuration on a deployment** (``KernelConfigResolver.resolveConfigurationToApply``; developer guide
  "Update component configurations"): start from the configuration the core has, remove the ``reset`` JSON
  pointers (``""`` = everything), add the recipe's ``DefaultConfiguration`` without overwriting anything present,
  then apply ``merge``. A changed recipe default therefore does not replace a deployed value: reset it.
- **Reactions to a deployment** (``lifecyclemanager/GenericExternalService.java`` config subscriber): a new
  version or a changed Install step → reinstall and restart; any other changed lifecycle value (Run, Setenv) →
  restart; only configuration changed → ``ConfigurationUpdateEvents`` to subscribers, no restart.
- **IPC authorization** (:mod:`tests.edge_component.nucleus_auth`, reloaded from ``accessControl`` on every
  deployment as ``authorization/AuthorizationHandler.java`` does) and PublishToIoTCore forwarded to an MQTT broker
  (here mosquitto, for AWS IoT Core) with the thing name as client id.
- **Processes** (``lifecyclemanager/ShellRunner.java``, ``util/Exec.java``, ``util/platforms/unix/UnixExec.java``,
  ``UnixPlatform.SudoDecorator``): each script runs as ``sh -c SCRIPT`` in ``{work:path}`` with the nucleus's own
  environment (``sudo -E``) plus ``PATH``, ``HOME`` of the run-with user (``sudo -H``), ``SVCUID``,
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, ``GG_ROOT_CA_PATH``, the nucleus's ``setenv`` values
  (``deployment/DeviceConfiguration.java``: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, ``AWS_IOT_THING_NAME``;
  ``ipc/IPCEventStreamService.java``: ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH[_FOR_COMPONENT]``;
  ``lifecyclemanager/Kernel.java``: ``GGC_VERSION``; ``tes/TokenExchangeService.java``:
  ``AWS_CONTAINER_CREDENTIALS_FULL_URI``) and the recipe's Setenv (lifecycle level, then step level:
  ``GenericExternalService.addEnv``). The nucleus's environment is a systemd service's (``PATH``, ``LANG``):
  nothing from the test process leaks in (no ``PYTHONPATH``, no virtualenv, no checkout). The run-with user is
  ``ggc_user`` when it exists, else ``nobody`` when the tests run as root, else the current user.
- **Lifecycle** (``lifecyclemanager/Lifecycle.java``): Install must exit 0 within its ``Timeout`` (default 120 s);
  Run is the long-running process; a failed step is retried (Install again from NEW, Run restarted) and the
  component is BROKEN after 3 errors in a row (``MAXIMUM_CONTINUAL_ERROR``); Run exiting 0 is FINISHED. Stopping
  sends SIGTERM to the process and its children and SIGKILL to whatever is left 5 s later
  (``util/platforms/unix/UnixExec.java`` ``close``, ``Exec.gracefulShutdownTimeout``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from tests.edge_component.nucleus import TestNucleus
from tests.edge_component.nucleus_auth import Authorizer

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLACEHOLDER = re.compile(r"\{([.\w-]+):([^:}]*)}")  # KernelConfigResolver.SAME_COMPONENT_INTERPOLATION_REGEX
DEFAULT_INSTALL_TIMEOUT_S = 120  # Lifecycle.DEFAULT_INSTALL_STAGE_TIMEOUT_IN_SEC
GRACEFUL_SHUTDOWN_S = 5  # Exec.gracefulShutdownTimeout: SIGTERM, then SIGKILL (UnixExec.close)
MAXIMUM_CONTINUAL_ERROR = 3  # Lifecycle.MAXIMUM_CONTINUAL_ERROR
_MISSING = object()


class LifecycleError(RuntimeError):
    """A lifecycle step failed (non-zero exit or timeout); the message carries the end of the component log."""


@dataclass(frozen=True)
class RunWith:
    user: str
    uid: int
    gid: int
    home: str

    @classmethod
    def default(cls) -> RunWith:
        if os.geteuid() == 0:
            for name in ("ggc_user", "nobody"):
                with contextlib.suppress(KeyError):
                    entry = pwd.getpwnam(name)
                    return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
        entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


@dataclass
class Component:
    name: str
    version: str
    recipe: dict[str, Any]
    lifecycle: dict[str, Any]
    """The manifest's Lifecycle, interpolated."""
    configuration: dict[str, Any]
    artifacts: Path
    decompressed: Path
    work: Path
    log: Path
    state: str = "NEW"
    errors: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    supervisor: threading.Thread | None = field(default=None, repr=False)
    stopping: bool = False

    def step(self, name: str) -> dict[str, Any]:
        """A lifecycle step as a lower-cased mapping (a bare string is its script): nucleus keys are case-insensitive."""
        raw = _get(self.lifecycle, name)
        if raw is None:
            return {}
        return {"script": raw} if isinstance(raw, str) else {k.lower(): v for k, v in raw.items()}


class TestCore:
    """A core in its own folder: ``deploy`` a built component, ``install``, ``start``; redeploys react like the nucleus."""

    __test__ = False

    def __init__(
        self,
        thing_name: str = "test-thing",
        region: str = "us-east-1",
        interpolate_component_configuration: bool = False,
        nucleus_env: dict[str, str] | None = None,
        run_with: RunWith | None = None,
    ) -> None:
        self.thing_name = thing_name
        self.region = region
        self.interpolate = interpolate_component_configuration
        self.run_with = run_with or RunWith.default()
        # mkdtemp is 0700; the nucleus root is 0755 so the run-with user can reach its files.
        self.root = Path(tempfile.mkdtemp(prefix="ggcore-"))
        self.root.chmod(0o755)
        (self.root / "logs").mkdir()
        self.nucleus_env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", **(nucleus_env or {})}
        self.components: dict[str, Component] = {}
        self.authorizer = Authorizer()
        self.ipc: TestNucleus | None = None
        self._mqtt: mqtt.Client | None = None
        self._lock = threading.Lock()

    # --- IoT Core stand-in -------------------------------------------------------------------------
    def connect_mqtt(self, host: str, port: int) -> None:
        """PublishToIoTCore goes to this broker, as the nucleus's MQTT connection to AWS IoT Core."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.thing_name)
        client.connect(host, port)
        client.loop_start()
        self._mqtt = client

    def _forward(self, topic: str, payload: bytes, qos: str) -> None:
        if self._mqtt is None:
            return
        info = self._mqtt.publish(topic, payload, qos=1 if qos == "1" else 0)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise RuntimeError(f"not acknowledged by the broker (rc={info.rc})")

    # --- deployment ----------------------------------------------------------------------------------
    def deploy(
        self,
        recipe_file: Path,
        artifacts_from: Path,
        merge: dict[str, Any] | None = None,
        reset: list[str] | None = None,
        nucleus_merge: dict[str, Any] | None = None,
    ) -> str:
        """Deploy one component version with a configuration update; returns what the core did about it
        (``new``, ``reinstall``, ``restart``, ``notify`` or ``none``) and does it when the component is running."""
        if nucleus_merge and "interpolateComponentConfiguration" in nucleus_merge:
            self.interpolate = bool(nucleus_merge["interpolateComponentConfiguration"])
        recipe = yaml.safe_load(recipe_file.read_text())
        name = recipe["ComponentName"]
        previous = self.components.get(name)
        component = self._place(recipe, artifacts_from)
        config = self._resolve_configuration(recipe, previous, merge, reset)
        if self.interpolate:
            config = self._interpolate(config, component, configuration=None)
        component.configuration = config
        component.lifecycle = self._interpolate(_select_manifest(recipe).get("Lifecycle") or {}, component, config)
        self._own(component)
        self.authorizer.load(name, config)
        action = _reaction(previous, component)
        if previous is not None:  # the same service: its process and state carry over
            for key in ("version", "recipe", "lifecycle", "configuration", "artifacts", "decompressed"):
                setattr(previous, key, getattr(component, key))
            component = previous
        self.components[name] = component
        self._serve_ipc(component, notify=action == "notify")
        if component.state == "RUNNING" and action in ("reinstall", "restart"):
            self.stop(name)
            if action == "reinstall":
                self.install(name)
            self.start(name)
        return action

    def deploy_document(self, document: dict[str, Any], recipe_file: Path, artifacts_from: Path) -> str:
        """A CreateDeployment document's ``components``: merge (a JSON string) and reset for our component, and the
        nucleus's own configuration merge (``aws.greengrass.Nucleus``)."""
        components = document["components"]
        nucleus = components.get("aws.greengrass.Nucleus", {}).get("configurationUpdate", {})
        name = yaml.safe_load(recipe_file.read_text())["ComponentName"]
        update = components[name].get("configurationUpdate", {})
        return self.deploy(
            recipe_file,
            artifacts_from,
            merge=json.loads(update["merge"]) if update.get("merge") else None,
            reset=update.get("reset"),
            nucleus_merge=json.loads(nucleus["merge"]) if nucleus.get("merge") else None,
        )

    def _place(self, recipe: dict[str, Any], artifacts_from: Path) -> Component:
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        store = self.root / "packages"
        artifacts = store / "artifacts" / name / version
        decompressed = store / "artifacts-unarchived" / name / version
        work = self.root / "work" / name
        for folder in (artifacts, decompressed, work):
            folder.mkdir(parents=True, exist_ok=True)
        work.chmod(0o700)  # Permissions.setServiceWorkPathPermission
        for artifact in _select_manifest(recipe).get("Artifacts") or []:
            file_name = artifact["Uri"].rsplit("/", 1)[1]
            target = artifacts / file_name
            if not target.exists():  # ArtifactDownloader.downloadRequired: a local recipe keeps what is there
                shutil.copyfile(artifacts_from / file_name, target)
            if str(artifact.get("Unarchive", "NONE")).upper() == "ZIP":
                _unzip(target, decompressed / Path(file_name).stem)
        log = self.root / "logs" / f"{name}.log"
        return Component(name, version, recipe, {}, {}, artifacts, decompressed, work, log)

    @staticmethod
    def _resolve_configuration(
        recipe: dict[str, Any], previous: Component | None, merge: dict[str, Any] | None, reset: list[str] | None
    ) -> dict[str, Any]:
        config = copy.deepcopy(previous.configuration) if previous else {}
        for pointer in reset or []:
            if pointer == "":
                config = {}
            else:
                _remove_pointer(config, pointer)
        defaults = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
        _fill_missing(config, copy.deepcopy(defaults))
        _deep_merge(config, copy.deepcopy(merge or {}))
        return config

    def _own(self, component: Component) -> None:
        """RunWithPathOwnershipHandler.updateOwner + Permissions.setArtifactPermission."""
        for top in (component.artifacts, component.decompressed):
            for path in [top, *top.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o755)
                else:  # ownerWrite is added when the nucleus does not run as root (Permissions.java)
                    path.chmod(0o440 if os.geteuid() == 0 else 0o640)
                if path != top and not self.run_with.is_current:
                    os.chown(path, self.run_with.uid, self.run_with.gid)
        if not self.run_with.is_current:
            for path in [component.work, *component.work.rglob("*")]:
                os.lchown(path, self.run_with.uid, self.run_with.gid)

    def _interpolate(self, value: Any, component: Component, configuration: dict[str, Any] | None) -> Any:
        if isinstance(value, dict):
            return {k: self._interpolate(v, component, configuration) for k, v in value.items()}
        if isinstance(value, list):
            return [self._interpolate(v, component, configuration) for v in value]
        if not isinstance(value, str):
            return value
        system = {
            ("artifacts", "path"): str(component.artifacts),
            ("artifacts", "decompressedPath"): str(component.decompressed),
            ("work", "path"): str(component.work),
            ("kernel", "rootPath"): str(self.root),
            ("iot", "thingName"): self.thing_name,
        }

        def replace(match: re.Match[str]) -> str:
            namespace, key = match.group(1), match.group(2)
            if namespace != "configuration":
                return system.get((namespace, key), match.group(0))
            found = _MISSING if configuration is None else _json_pointer(configuration, key)
            if found is _MISSING:
                return match.group(0)
            return json.dumps(found, separators=(",", ":")) if isinstance(found, dict | list) else _as_text(found)

        return PLACEHOLDER.sub(replace, value)

    def _serve_ipc(self, component: Component, notify: bool) -> None:
        if self.ipc is None:
            self.ipc = TestNucleus(component.name, component.configuration, socket_path=str(self.root / "ipc.socket"))
            self.ipc.authorizer = self.authorizer
            self.ipc.forward = self._forward
            self.ipc.start()
            return
        old = self.ipc.config
        self.ipc.component = component.name
        self.ipc.replace_config(component.configuration, notify=notify, previous=old)

    # --- lifecycle -----------------------------------------------------------------------------------
    def environment(self, component: Component, step: str) -> dict[str, str]:
        svcuid = self.ipc.svcuid if self.ipc else "no-ipc"
        socket_path = self.ipc.socket_path if self.ipc else ""
        env = {
            **self.nucleus_env,
            "HOME": self.run_with.home,
            "SVCUID": svcuid,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": svcuid,
            "GG_ROOT_CA_PATH": "",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_IOT_THING_NAME": self.thing_name,
            "GGC_VERSION": "2.14.0",
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": socket_path,
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": socket_path,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://localhost:0/2016-11-01/credentialprovider/",
        }
        for setenv in (_get(component.lifecycle, "Setenv"), component.step(step).get("setenv")):
            env.update({key: str(value) for key, value in (setenv or {}).items()})
        return env

    def spawn(self, name: str, step: str, argv: list[str] | None = None) -> subprocess.Popen[bytes]:
        """Start a lifecycle step (or ``argv`` with that step's environment and user) as the nucleus would."""
        component = self.components[name]
        script = component.step(step).get("script")
        if argv is None and not isinstance(script, str):
            raise LifecycleError(f"{name}: no {step} script")
        with component.log.open("ab") as log:
            log.write(f"--- {step} ---\n".encode())
            log.flush()  # before the child writes to the same file
            user: dict[str, Any] = {}
            if not self.run_with.is_current:
                user = {"user": self.run_with.uid, "group": self.run_with.gid, "extra_groups": []}
            return subprocess.Popen(
                argv or ["sh", "-c", str(script)],
                cwd=component.work,
                env=self.environment(component, step),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **user,
            )

    def exec_as(self, name: str, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the component would run it (Run's environment, the run-with user), capturing output."""
        component = self.components[name]
        user: dict[str, Any] = {}
        if not self.run_with.is_current:
            user = {"user": self.run_with.uid, "group": self.run_with.gid, "extra_groups": []}
        env = self.environment(component, "Run")
        return subprocess.run(
            argv, cwd=component.work, env=env, capture_output=True, text=True, timeout=timeout, **user
        )

    def install(self, name: str) -> float:
        """Run Install until it succeeds (retried from NEW, BROKEN after 3 errors); returns its wall time."""
        component = self.components[name]
        step = component.step("Install")
        timeout = float(step.get("timeout", DEFAULT_INSTALL_TIMEOUT_S))
        errors: list[str] = []
        while len(errors) < MAXIMUM_CONTINUAL_ERROR:
            if not step:
                break
            started = time.monotonic()
            process = self.spawn(name, "Install")
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                errors.append(f"Install timed out after {timeout:g} s")
                continue
            if code == 0:
                component.state, component.errors = "INSTALLED", 0
                return time.monotonic() - started
            errors.append(f"Install exited {code}")
        else:
            component.state = "BROKEN"
            raise LifecycleError(f"{name}: BROKEN after {'; '.join(errors)}\n{self.log_tail(name)}")
        component.state = "INSTALLED"
        return 0.0

    def start(self, name: str) -> None:
        component = self.components[name]
        component.stopping = False
        component.process = self.spawn(name, "Run")
        component.state = "RUNNING"
        component.supervisor = threading.Thread(target=self._supervise, args=(component,), daemon=True)
        component.supervisor.start()

    def _supervise(self, component: Component) -> None:
        """Lifecycle.java: Run exiting 0 is FINISHED; otherwise ERRORED, restarted, BROKEN at the 3rd error."""
        while True:
            process = component.process
            assert process is not None
            code = process.wait()
            with self._lock:
                if component.stopping or component.process is not process:
                    return
                if code == 0:
                    component.state = "FINISHED"
                    return
                component.errors += 1
                if component.errors >= MAXIMUM_CONTINUAL_ERROR:
                    component.state = "BROKEN"
                    return
                component.process = self.spawn(component.name, "Run")

    def wait_state(self, name: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.components[name].state
            if state in states:
                return state
            time.sleep(0.1)
        raise LifecycleError(f"{name} still {self.components[name].state} after {timeout:g} s\n{self.log_tail(name)}")

    def stop(self, name: str) -> int | None:
        component = self.components[name]
        with self._lock:
            component.stopping = True
            process = component.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            code = process.wait(timeout=GRACEFUL_SHUTDOWN_S)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            code = process.wait()
        component.state = "FINISHED"
        return code

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.components[name].log
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def close(self) -> None:
        for name in list(self.components):
            self.stop(name)
        if self.ipc is not None:
            self.ipc.stop()
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _reaction(previous: Component | None, new: Component) -> str:
    """GenericExternalService's configuration subscriber: what a deployment makes the nucleus do."""
    if previous is None:
        return "new"
    if previous.version != new.version or previous.step("Install") != new.step("Install"):
        return "reinstall"
    if previous.lifecycle != new.lifecycle:
        return "restart"
    return "notify" if previous.configuration != new.configuration else "none"


def _get(mapping: dict[str, Any], key: str) -> Any:
    return next((v for k, v in mapping.items() if k.lower() == key.lower()), None)


def _select_manifest(recipe: dict[str, Any]) -> dict[str, Any]:
    """The first manifest whose Platform matches this host (the nucleus's platform resolution)."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "aarch64", "armv7l": "arm"}.get(machine, machine)
    for manifest in recipe.get("Manifests") or []:
        platform = manifest.get("Platform") or {}
        if platform.get("os", "linux") in ("linux", "*") and platform.get("architecture", arch) in (arch, "*"):
            return dict(manifest)
    raise LifecycleError(f"no manifest in {recipe['ComponentName']} for linux/{arch}")


def _unzip(archive: Path, into: Path) -> None:
    """``Unarchiver.unzip``: an entry that escapes ``into`` fails the deployment; a file is written only when
    missing or of another size; nothing already there is deleted."""
    into.mkdir(parents=True, exist_ok=True)
    base = into.resolve()
    with zipfile.ZipFile(archive) as zf:
        for entry in zf.infolist():
            if not str((into / entry.filename).resolve()).startswith(str(base) + os.sep):
                raise LifecycleError(f"Entry is outside of the target dir: {entry.filename}")
        for entry in zf.infolist():
            target = into / entry.filename
            if entry.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists() or target.stat().st_size != entry.file_size:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    target.chmod(0o644)
                target.write_bytes(zf.read(entry))


def _json_pointer(document: Any, pointer: str) -> Any:
    if pointer in ("", "/"):
        return document
    node = document
    for raw in pointer.lstrip("/").split("/"):
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return _MISSING
    return node


def _remove_pointer(document: dict[str, Any], pointer: str) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    node: Any = document
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _fill_missing(base: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Defaults merged with timestamp 1: they add what is missing and never overwrite a value already there."""
    for key, value in defaults.items():
        if key not in base:
            base[key] = value
        elif isinstance(value, dict) and isinstance(base[key], dict):
            _fill_missing(base[key], value)


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
