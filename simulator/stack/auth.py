"""Passwords for a stack that listens beyond loopback: never an anonymous broker or a password-less Redis on a LAN.

``visual-search stack up --host 192.168.1.20`` makes cameras on the LAN able to reach mosquitto, and so anything
else on that LAN. On such a host the stack generates (once, then reuses) a mosquitto password file with two
users and a Redis ``requirepass``, and writes them to ``<state dir>/credentials.json`` (mode 0600):

- ``device``: what cameras connect as. Like the AWS IoT policy (``${iot:Connection.Thing.ThingName}``), the ACL
  scopes each connection to its own topics by client id, which the device sets to its thing name.
- ``rule-bridge``: the rule bridge and the match publisher.

Passwords never appear on a command line (mosquitto_passwd ``-U`` hashes a file in place), in ``stack.json``,
or in logs. On loopback nothing changes: only processes on this machine can connect.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from simulator.stack.processes import find_binary

DEVICE_USER = "device"
BRIDGE_USER = "rule-bridge"
ACL = """\
# Cameras: only their own topics (the client id is the thing name).
pattern write visualsearch/%c/features
pattern write visualsearch/%c/status
pattern write visualsearch/%c/thumbnail
pattern read visualsearch/%c/matches
# The rule bridge reads every device's messages and publishes match records.
user rule-bridge
topic read visualsearch/+/features
topic read visualsearch/+/status
topic write visualsearch/+/matches
"""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; any other name or address may be reachable from a LAN."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StackAuth:
    folder: Path
    device_password: str
    bridge_password: str
    redis_password: str

    @property
    def credentials_file(self) -> Path:
        return self.folder / "credentials.json"

    @property
    def password_file(self) -> Path:
        return self.folder / "mosquitto.passwd"

    @property
    def acl_file(self) -> Path:
        return self.folder / "mosquitto.acl"

    @property
    def device_password_file(self) -> Path:
        """What a camera's ``publish.mqtt.password_file`` points at."""
        return self.folder / "device.password"

    def service_env(self, redis_url: str) -> dict[str, str]:
        """``VS_*`` variables for the bridge and the API server (CloudSettings reads them)."""
        return {"VS_REDIS_URL": redis_url, "VS_MQTT_USERNAME": BRIDGE_USER, "VS_MQTT_PASSWORD": self.bridge_password}


def prepare_auth(state_dir: Path) -> StackAuth:
    """The stack's credentials under ``state_dir/auth`` (made on first use), with mosquitto's files written."""
    folder = state_dir / "auth"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    auth = _load(folder) or StackAuth(folder, _token(), _token(), _token())
    _write_private(
        auth.credentials_file,
        json.dumps(
            {
                "mqtt": {DEVICE_USER: auth.device_password, BRIDGE_USER: auth.bridge_password},
                "redis": auth.redis_password,
            },
            indent=2,
        ),
    )
    _write_private(auth.device_password_file, auth.device_password + "\n")
    _write_private(auth.acl_file, ACL)
    _write_private(auth.password_file, f"{DEVICE_USER}:{auth.device_password}\n{BRIDGE_USER}:{auth.bridge_password}\n")
    # Hash the plain-text file in place: the passwords never appear in a process's arguments.
    subprocess.run([find_binary("mosquitto_passwd"), "-U", str(auth.password_file)], check=True, capture_output=True)
    return auth


def _load(folder: Path) -> StackAuth | None:
    try:
        data = json.loads((folder / "credentials.json").read_text())
        mqtt = data["mqtt"]
        return StackAuth(folder, str(mqtt[DEVICE_USER]), str(mqtt[BRIDGE_USER]), str(data["redis"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _token() -> str:
    return secrets.token_urlsafe(24)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
