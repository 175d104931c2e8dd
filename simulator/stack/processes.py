"""Start and stop the real mosquitto and redis-server binaries on loopback ports.

Used by ``visual-search stack up`` and by the test fixtures, so tests exercise the same launch code that
users run. Each service writes its config and data under its own folder and is health-checked before
``start()`` returns.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from model.contracts.errors import VisualSearchError

_P = TypeVar("_P", bound="ManagedProcess")


class ServiceError(VisualSearchError, RuntimeError):
    """A service binary is missing, or the service did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> OSError | None:
    """Would a server fail to listen on ``host:port``? Returns the bind error, or None when the port is free.

    Probes the way the servers bind: mosquitto (``net__socket_listen``: ``SO_REUSEADDR``), redis-server
    (``anetSetReuseAddr``), uvicorn and ``socketserver.TCPServer`` (``allow_reuse_address``) all set
    ``SO_REUSEADDR``, so connections of a stopped server left in TIME_WAIT do not keep them from starting.
    A probe without it reports such a port as taken for a minute after every restart with live clients.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def port_holder(port: int) -> str | None:
    """``"pid 123 (mosquitto)"`` for the process listening on TCP ``port``, when /proc lets us see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the socket inode.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                name = (proc / "comm").read_text().strip()
                return f"pid {proc.name} ({name})"
        except OSError:
            continue
    return None


def wait_for_port(host: str, port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"process exited with code {process.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServiceError(f"nothing listening on {host}:{port} after {timeout:.0f} s")


def find_binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError(f"'{name}' is not installed: run `make setup` (apt-get install mosquitto redis-server)")


@dataclass(kw_only=True)
class ManagedProcess:
    """A child process with a log file, stopped with SIGTERM then SIGKILL."""

    name: str
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    """Added to this process's environment for the child (e.g. the ``VS_*`` settings of the handlers)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files; called before every (re)start."""

    def start(self: _P, timeout: float = 10.0) -> _P:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        self.prepare()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
        try:
            # start_new_session: Ctrl-C in the parent terminal must not kill the services behind its back.
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )
        finally:
            log.close()
        try:
            self.wait_ready(timeout)
        except ServiceError as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise ServiceError(f"{self.name} did not start: {exc}\n--- {self.log_path} ---\n{tail}") from exc
        return self

    def wait_ready(self, timeout: float) -> None:
        wait_for_port(self.host, self.port, timeout, self.process)

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash looks like (fault-injection tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self: _P, timeout: float = 10.0) -> _P:
        self.stop()
        return self.start(timeout)


@dataclass(kw_only=True)
class MosquittoTls:
    """Paths for a mutual-TLS listener: the broker requires a client certificate signed by ``cafile``."""

    cafile: Path
    certfile: Path
    keyfile: Path
    port: int = 0
    require_certificate: bool = True


@dataclass(kw_only=True)
class MosquittoProcess(ManagedProcess):
    name: str = "mosquitto"
    tls: MosquittoTls | None = None
    acl_file: Path | None = None
    password_file: Path | None = None
    """mosquitto password file: clients must log in (``allow_anonymous false``); see ``simulator.stack.auth``."""
    extra_config: str = ""
    persistence: bool = False
    """Keep sessions (the rule bridge's subscription and its queued messages) across a broker restart."""

    def prepare(self) -> None:
        lines = [
            "per_listener_settings false",
            f"allow_anonymous {'false' if self.password_file else 'true'}",
            *([f"password_file {self.password_file}"] if self.password_file else []),
            *(
                ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
                if self.persistence
                else ["persistence false"]
            ),
            # Started as root, mosquitto drops to the 'mosquitto' user, which cannot write its database here.
            *(
                [f"user {getpass.getuser()}"]
                if self.persistence and os.geteuid() == 0 and "user " not in self.extra_config
                else []
            ),
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            # IoT Core refuses a payload over 128 KB; mosquitto drops one too (max_packet_size would count the
            # topic and header as well, which IoT Core does not).
            "message_size_limit 131072",
            f"listener {self.port} {self.host}",
        ]
        if self.tls is not None:
            if not self.tls.port:
                self.tls.port = free_port(self.host)
            lines += [
                f"listener {self.tls.port} {self.host}",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
                "use_identity_as_username true",
            ]
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.extra_config:
            lines.append(self.extra_config)
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [find_binary("mosquitto"), "-c", str(self.workdir / "mosquitto.conf")]

    def wait_ready(self, timeout: float) -> None:
        wait_for_port(self.host, self.port, timeout, self.process)
        if self.tls is not None:
            wait_for_port(self.host, self.tls.port, timeout, self.process)


@dataclass(kw_only=True)
class RedisProcess(ManagedProcess):
    name: str = "redis"
    password: str | None = None
    appendonly: bool = False

    def prepare(self) -> None:
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            f'dir "{self.workdir}"',  # quoted: a state folder may contain spaces
            "save ''",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "protected-mode yes",
            "daemonize no",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        conf = self.workdir / "redis.conf"
        conf.write_text("\n".join(lines) + "\n")
        conf.chmod(0o600)  # it may hold the AUTH password

    def command(self) -> list[str]:
        return [find_binary("redis-server"), str(self.workdir / "redis.conf")]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"


@dataclass(kw_only=True)
class PythonServiceProcess(ManagedProcess):
    """``python -m <module> <args>`` (the rule bridge, the HTTP server), ready when it says so.

    Readiness is the service's own statement, not an open port: the bridge writes ``ready_file`` only
    after its subscription is acknowledged and the search handler has loaded; the HTTP server is ready
    when ``health_path`` answers 200.
    """

    module: str
    args: list[str] = field(default_factory=list)
    ready_file: Path | None = None
    health_path: str | None = None
    python: str = sys.executable

    def command(self) -> list[str]:
        return [self.python, "-m", self.module, *self.args]

    def prepare(self) -> None:
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.health_path is not None:
            wait_for_port(self.host, self.port, timeout, self.process)
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(f"process exited with code {self.process.returncode} before it was ready")
            if self._ready():
                return
            time.sleep(0.05)
        raise ServiceError(f"not ready after {timeout:.0f} s")

    def _ready(self) -> bool:
        if self.ready_file is not None and not self.ready_file.exists():
            return False
        if self.health_path is not None:
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}{self.health_path}", timeout=2) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, OSError):
                return False
        return True
