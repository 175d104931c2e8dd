"""``stack up --host`` on an address a LAN can reach: passwords on the broker and on Redis.

Before, ``--host 0.0.0.0`` or a LAN address gave every machine on the network an anonymous mosquitto (publish as
any camera, read every match) and a password-less Redis (read or wipe everything).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion

from edge_component.config import MqttConfig
from edge_component.publishers.mqtt import MqttPublisher
from model.contracts.topics import features_topic
from model.contracts.wire import FeatureMessage, encode
from simulator.stack.auth import is_loopback
from simulator.stack.config import StackConfig
from simulator.stack.manager import stack_down, stack_up
from simulator.stack.state import StackState, state_path
from tests.hardening.conftest import Catalog, count_case
from tests.wait import wait_for

pytestmark = pytest.mark.slow


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 9))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback or address == "0.0.0.0" else address


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True)],
        *[("0.0.0.0", False), ("192.168.1.20", False), ("::", False), ("camera-hub.lan", False)],
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.fixture
def lan_stack(hardening_catalog: Catalog, tmp_path: Path) -> Iterator[tuple[StackState, Path]]:
    host = lan_address()
    if host is None:
        pytest.skip("no non-loopback interface on this machine")
    config = StackConfig(
        state_dir=tmp_path / "stack",
        host=host,
        mqtt_port=0,
        redis_port=0,
        http_port=0,
        index_dir=hardening_catalog.folder,
    )
    state, _ = stack_up(config)
    try:
        yield state, config.state_dir
    finally:
        stack_down(config.state_dir)


def test_a_lan_stack_requires_passwords_and_still_works(
    lan_stack: tuple[StackState, Path], hardening_catalog: Catalog
) -> None:
    count_case("stack: anonymous access on a LAN address")
    state, state_dir = lan_stack
    host = state.host
    broker, store = state.service("mosquitto"), state.service("redis")
    assert broker is not None and store is not None
    # Anonymous MQTT: refused by the broker.
    results: list[int] = []
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="intruder")
    anonymous.on_connect = lambda _c, _u, _f, reason, _p: results.append(reason.value)
    anonymous.connect(host, broker.port)
    anonymous.loop_start()
    wait_for(lambda: results, 10, "the broker's CONNACK")
    anonymous.loop_stop()
    assert results and results[0] != 0, "an anonymous client connected to a broker on a LAN address"
    # Redis without the password: refused.
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=host, port=store.port).ping()
    # The credentials: private, and nowhere in stack.json.
    credentials = state_dir / "auth" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    secrets = json.loads(credentials.read_text())
    recorded = state_path(state_dir).read_text()
    assert secrets["redis"] not in recorded and secrets["mqtt"]["device"] not in recorded
    assert secrets["redis"] not in json.dumps(state.urls)
    # A camera with the device login publishes; the bridge (its own login) stores the match.
    cfg = MqttConfig(
        host=host, port=broker.port, username="device", password_file=str(state_dir / "auth" / "device.password")
    )
    camera = MqttPublisher("lan-cam", cfg).start()
    try:
        message = FeatureMessage("lan-cam", 1, time.time(), hardening_catalog.model_id, hardening_catalog.vectors[0])
        camera.publish(features_topic("lan-cam"), encode(message), seq=1)
        assert camera.flush(15)
        store_client = redis.Redis(host=host, port=store.port, password=secrets["redis"])
        wait_for(lambda: store_client.llen("visualsearch:matches:lan-cam"), 20, "the camera's match record")
        assert store_client.llen("visualsearch:matches:lan-cam") == 1
    finally:
        camera.stop(1.0)
