"""Fixtures for the edge component: small videos made in code, a test PKI, an MQTT subscriber."""

from __future__ import annotations

import getpass
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_component.publishers.base import Publisher
from simulator.stack.processes import MosquittoProcess, MosquittoTls
from simulator.stack.tls import Pki, make_test_pki


def synthetic_frames(count: int, width: int = 160, height: int = 120, seed: int = 1) -> list[np.ndarray]:
    """Distinct frames (each a different smooth pattern), so every vector differs clearly from the last."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        frames.append(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "MJPG/AVI writer unavailable"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi", synthetic_frames(12))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_test_pki(tmp_path_factory.mktemp("pki"), client_name="cam-tls")


@pytest.fixture
def tls_mosquitto(tmp_path: Path, pki: Pki) -> Iterator[MosquittoProcess]:
    tls = MosquittoTls(cafile=pki.ca.cert, certfile=pki.server.cert, keyfile=pki.server.key)
    # mosquitto drops root privileges to the 'mosquitto' user, which cannot read pytest's 0700 folders.
    extra = f"user {getpass.getuser()}" if os.geteuid() == 0 else ""
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto-tls", tls=tls, extra_config=extra).start()
    try:
        yield broker
    finally:
        broker.stop()


SENTINEL = b'{"sentinel":true}'
"""Sent last by :meth:`Collector.drain`; never a valid feature message, left out of :meth:`Collector.payloads`."""


class Collector:
    """A real paho subscriber that records every message on ``topic`` (with its arrival order)."""

    def __init__(self, host: str, port: int, topic: str, client_id: str = "", clean_session: bool = True) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        self.client.reconnect_delay_set(1, 1)
        self.topic = topic

        def on_connect(client: mqtt.Client, *_: Any) -> None:
            client.subscribe(topic, qos=1)

        def on_subscribe(*_: Any) -> None:
            self.subscribed.set()

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with self._cond:
                self.messages.append((msg.topic, bytes(msg.payload)))
                self._cond.notify_all()

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "test subscriber did not subscribe"

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes]]], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def drain(self, publisher: Publisher, topic: str, timeout: float = 30.0) -> None:
        """Return once everything ``publisher`` sent before has arrived: it sends :data:`SENTINEL` on ``topic``
        after the rest, and MQTT delivers one client's messages on a topic in order (MQTT 3.1.1, 4.6 "Message
        ordering"), so nothing sent earlier can arrive after it. Replaces a sleep before "nothing more arrives"."""
        publisher.publish(topic, SENTINEL)
        assert self.wait_for(lambda m: (topic, SENTINEL) in m, timeout), "the sentinel did not arrive"

    def payloads(self, suffix: str = "/features") -> list[bytes]:
        with self._cond:
            return [p for t, p in self.messages if t.endswith(suffix) and p != SENTINEL]

    def statuses(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.payloads("/status")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
