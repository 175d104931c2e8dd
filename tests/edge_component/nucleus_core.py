"""A test Greengrass core: installs and runs a built component the way the nucleus does, as real processes.

Each rule below follows the Greengrass v2 documentation or the nucleus source
(github.com/aws-greengrass/aws-greengrass-nucleus, ``src/main/java/com/aws/greengrass/...``):

- **Layout** (``util/NucleusPaths.java``, ``componentmanager/ComponentStore.java``): artifacts in
  ``<root>/packages/artifacts/<name>/<version>/`` = ``{artifacts:path}``; a ZIP artifact (``Unarchive: ZIP``)
  is extracted into ``<root>/packages/artifacts-unarchived/<name>/<version>/<archive name without .zip>/``
  (``componentmanager/ComponentManager.java`` ``unarchiveArtifactPath(id, getFileName(file))``,
  ``componentmanager/Unarchiver.java``, entries outside the folder refused); ``{artifacts:decompressedPath}`` is
  the ``<version>`` folder above it; ``{work:path}`` = ``<root>/work/<name>/`` (mode 0700), the process's cwd.
- **Ownership and modes** (``lifecyclemanager/RunWithPathOwnershipHandler.java``, ``util/Permissions.java``,
  ``componentmanager/models/Permission.java``): files under the artifact folders and the work folder belong to the
  run-with user; artifact files are 0440 (default ``Permission: Read: OWNER``), directories 0755.
- **Recipe variables** (``componentmanager/KernelConfigResolver.java``): ``{namespace:key}`` with the regex
  ``\\{([.\\w-]+):([^:}]*)}``; namespaces ``artifacts`` (path, decompressedPath), ``work`` (path), ``kernel``
  (rootPath), ``iot`` (thingName), ``configuration`` (a JSON pointer; a container value becomes its JSON text).
  Lifecycle scripts are always interpolated. The component's *configuration* (``accessControl`` included) is
  interpolated only when the nucleus option ``interpolateComponentConfiguration`` is true, and then only with
  system parameters (``interpolateSystemParametersOnly``); unknown placeholders stay as they are.
- **Processes** (``lifecyclemanager/ShellRunner.java``, ``util/Exec.java``, ``util/platforms/unix/UnixExec.java``,
  ``UnixPlatform.SudoDecorator``): each script runs as ``sh -c SCRIPT`` in ``{work:path}`` with the nucleus's own
  environment plus ``PATH``, ``HOME`` (``sudo -H``: the run-with user's home), ``SVCUID``,
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, ``GG_ROOT_CA_PATH``, and the ``setenv`` values the nucleus configures
  (``deployment/DeviceConfiguration.java``: ``AWS_REGION``, ``AWS_DEFAULT_REGION``, ``AWS_IOT_THING_NAME``;
  ``ipc/IPCEventStreamService.java``: ``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH[_FOR_COMPONENT]``;
  ``lifecyclemanager/Kernel.java``: ``GGC_VERSION``; ``tes/TokenExchangeService.java``:
  ``AWS_CONTAINER_CREDENTIALS_FULL_URI``). Here the nucleus's environment is a systemd service's (``PATH``,
  ``LANG``): nothing from the test process leaks in (no ``PYTHONPATH``, no virtualenv, no checkout).
  The run-with user is the nucleus default ``ggc_user`` when it exists, else ``nobody`` when the tests run as
  root, else the current user (``sudo`` is skipped for the current user).
- **Lifecycle** (``lifecyclemanager/Lifecycle.java``, ``GenericExternalService.java``): Install must exit 0
  within its ``Timeout`` (default 120 s) or the component is ERRORED; Run is the long-running process (exit 0 →
  FINISHED, non-zero → ERRORED and restarted, BROKEN after 3 errors); stop sends SIGTERM and kills after the
  shutdown timeout (default 15 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.edge_component.nucleus import TestNucleus

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLACEHOLDER = re.compile(r"\{([.\w-]+):([^:}]*)}")  # KernelConfigResolver.SAME_COMPONENT_INTERPOLATION_REGEX
DEFAULT_INSTALL_TIMEOUT_S = 120  # Lifecycle.DEFAULT_INSTALL_STAGE_TIMEOUT_IN_SEC
DEFAULT_SHUTDOWN_TIMEOUT_S = 15  # Lifecycle.DEFAULT_SHUTDOWN_STAGE_TIMEOUT_IN_SEC
MAXIMUM_CONTINUAL_ERROR = 3  # Lifecycle.MAXIMUM_CONTINUAL_ERROR


class LifecycleError(RuntimeError):
    """A lifecycle step failed (non-zero exit or timeout); the message carries the end of its log."""


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
    manifest: dict[str, Any]
    artifacts: Path
    decompressed: Path
    work: Path
    log: Path
    state: str = "NEW"
    errors: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def lifecycle(self, step: str) -> dict[str, Any]:
        """The step as a mapping (a bare string is its script); keys are case-insensitive in the nucleus."""
        raw = _get(self.manifest.get("Lifecycle") or {}, step)
        if raw is None:
            return {}
        if isinstance(raw, str):
            return {"script": raw}
        return {key.lower(): value for key, value in raw.items()}


class TestCore:
    """A core in its own folder: ``deploy`` a built component, then ``install``/``start``/``stop`` it."""

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
        self.nucleus_env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", **(nucleus_env or {})}
        self.components: dict[str, Component] = {}
        self.ipc: TestNucleus | None = None

    # --- deployment ----------------------------------------------------------------------------------
    def deploy(self, recipe_file: Path, artifacts_from: Path, configuration: dict[str, Any] | None = None) -> Component:
        """Place the recipe's artifacts as the nucleus does and resolve its configuration and lifecycle."""
        recipe = yaml.safe_load(recipe_file.read_text())
        name, version = recipe["ComponentName"], recipe["ComponentVersion"]
        manifest = _select_manifest(recipe)
        store = self.root / "packages"
        artifacts = store / "artifacts" / name / version
        decompressed = store / "artifacts-unarchived" / name / version
        work = self.root / "work" / name
        for folder in (artifacts, decompressed):
            folder.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o700)  # Permissions.setServiceWorkPathPermission
        for artifact in manifest.get("Artifacts") or []:
            file_name = artifact["Uri"].rsplit("/", 1)[1]
            target = artifacts / file_name
            # ArtifactDownloader.downloadRequired: a local recipe (no digest) keeps a file already on disk, so a
            # changed build must carry a new version, as on a real core.
            if not target.exists():
                shutil.copyfile(artifacts_from / file_name, target)
            if str(artifact.get("Unarchive", "NONE")).upper() == "ZIP":
                _unzip(target, decompressed / Path(file_name).stem)
        (self.root / "logs").mkdir(exist_ok=True)
        component = Component(
            name, version, recipe, manifest, artifacts, decompressed, work, self.root / "logs" / f"{name}.log"
        )
        default = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
        config = json.loads(json.dumps(default))
        _deep_merge(config, configuration or {})
        if self.interpolate:
            config = self._interpolate(config, component, configuration_values=None)
        component.manifest = self._interpolate(manifest, component, configuration_values=config)
        component.recipe = {**recipe, "resolvedConfiguration": config}
        self._own(component)
        self.components[name] = component
        if self.ipc is None:
            self.ipc = TestNucleus(name, config, socket_path=str(self.root / "ipc.socket")).start()
        else:
            self.ipc.component, self.ipc.config = name, config
        return component

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

    def _interpolate(self, value: Any, component: Component, configuration_values: dict[str, Any] | None) -> Any:
        if isinstance(value, dict):
            return {k: self._interpolate(v, component, configuration_values) for k, v in value.items()}
        if isinstance(value, list):
            return [self._interpolate(v, component, configuration_values) for v in value]
        if not isinstance(value, str):
            return value

        def replace(match: re.Match[str]) -> str:
            namespace, key = match.group(1), match.group(2)
            if namespace == "configuration":
                if configuration_values is None:
                    return match.group(0)
                found = _json_pointer(configuration_values, key)
                if found is _MISSING:
                    return match.group(0)
                return json.dumps(found, separators=(",", ":")) if isinstance(found, dict | list) else _as_text(found)
            system = {
                ("artifacts", "path"): str(component.artifacts),
                ("artifacts", "decompressedPath"): str(component.decompressed),
                ("work", "path"): str(component.work),
                ("kernel", "rootPath"): str(self.root),
                ("iot", "thingName"): self.thing_name,
            }
            return system.get((namespace, key), match.group(0))

        return PLACEHOLDER.sub(replace, value)

    # --- lifecycle -----------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
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
        return env

    def _spawn(self, component: Component, step: str) -> subprocess.Popen[bytes]:
        script = component.lifecycle(step).get("script")
        if not isinstance(script, str):
            raise LifecycleError(f"{component.name}: no {step} script")
        env = self.environment()
        for key, value in (component.lifecycle(step).get("setenv") or {}).items():
            env[key] = str(value)
        log = component.log.open("ab")
        log.write(f"--- {step} ---\n".encode())
        log.flush()
        user: dict[str, Any] = {}
        if not self.run_with.is_current:
            user = {"user": self.run_with.uid, "group": self.run_with.gid, "extra_groups": []}
        try:
            return subprocess.Popen(
                ["sh", "-c", script],
                cwd=component.work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **user,
            )
        finally:
            log.close()

    def install(self, name: str) -> float:
        """Run Install to completion; returns its wall time. Raises :class:`LifecycleError` on failure."""
        component = self.components[name]
        step = component.lifecycle("Install")
        if not step:
            component.state = "INSTALLED"
            return 0.0
        timeout = float(step.get("timeout", DEFAULT_INSTALL_TIMEOUT_S))
        started = time.monotonic()
        process = self._spawn(component, "Install")
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            component.state = "ERRORED"
            raise LifecycleError(f"{name}: Install timed out after {timeout:.0f} s\n{self.log_tail(name)}") from None
        if code != 0:
            component.state = "ERRORED"
            raise LifecycleError(f"{name}: Install exited {code}\n{self.log_tail(name)}")
        component.state = "INSTALLED"
        return time.monotonic() - started

    def start(self, name: str) -> subprocess.Popen[bytes]:
        component = self.components[name]
        component.process = self._spawn(component, "Run")
        component.state = "RUNNING"
        return component.process

    def wait(self, name: str, timeout: float) -> int:
        """Wait for Run to exit; FINISHED on 0, ERRORED otherwise (the nucleus would then restart it)."""
        component = self.components[name]
        assert component.process is not None
        code = component.process.wait(timeout=timeout)
        component.state = "FINISHED" if code == 0 else "ERRORED"
        component.errors += code != 0
        return code

    def stop(self, name: str) -> int | None:
        component = self.components[name]
        process = component.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        timeout = float(component.lifecycle("Shutdown").get("timeout", DEFAULT_SHUTDOWN_TIMEOUT_S))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            code = process.wait(timeout=timeout)
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
        shutil.rmtree(self.root, ignore_errors=True)


_MISSING = object()


def _get(mapping: dict[str, Any], key: str) -> Any:
    for k, v in mapping.items():
        if k.lower() == key.lower():
            return v
    return None


def _select_manifest(recipe: dict[str, Any]) -> dict[str, Any]:
    """The first manifest whose Platform matches this host (``componentmanager/PlatformResolver``-like)."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "aarch64", "armv7l": "arm"}.get(machine, machine)
    for manifest in recipe.get("Manifests") or []:
        platform = manifest.get("Platform") or {}
        if platform.get("os", "linux") in ("linux", "*") and platform.get("architecture", arch) in (arch, "*"):
            return manifest
    raise LifecycleError(f"no manifest in {recipe['ComponentName']} for linux/{arch}")


def _unzip(archive: Path, into: Path) -> None:
    """``Unarchiver.unzip``: an entry that escapes ``into`` fails the deployment; a file is written only when
    missing or of another size; nothing already there is deleted."""
    into.mkdir(parents=True, exist_ok=True)
    base = into.resolve()
    with zipfile.ZipFile(archive) as zf:
        for entry in zf.infolist():
            target = (into / entry.filename).resolve()
            if not str(target).startswith(str(base) + os.sep):
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


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


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
