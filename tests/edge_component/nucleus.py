"""A test Greengrass nucleus: AWS EventStream RPC over a Unix socket, enough for the real awsiotsdk client.

Frames are ``[total_len u32][headers_len u32][prelude_crc u32][headers][payload][message_crc u32]``
(big-endian, CRC32); headers are ``[name_len u8][name][type u8][value]``. The nucleus checks the
CONNECT's ``authToken`` against ``SVCUID``, answers CONNECT_ACK, and serves three operations:

- ``aws.greengrass#PublishToIoTCore``: checks :attr:`TestNucleus.authorizer` when set (``UnauthorizedError``
  "Not Authorized" as ``MqttProxyIPCAgent`` answers; see :mod:`tests.edge_component.nucleus_auth`), hands the
  message to :attr:`TestNucleus.forward` when set (a failure is a ``ServiceError`` "Publish to topic T failed:
  ..."), records (topic, payload, qos) and answers with TERMINATE_STREAM;
- ``aws.greengrass#GetConfiguration``: answers the value at ``keyPath`` of :attr:`TestNucleus.config`;
- ``aws.greengrass#SubscribeToConfigurationUpdate``: keeps the stream open; :meth:`update_config`
  pushes ``aws.greengrass#ConfigurationUpdateEvents`` to every subscriber.

Each connection is served by its own thread; writes are serialized by a per-connection lock.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.edge_component.nucleus_auth import MQTT_PROXY, UNAUTHORIZED_ERROR, Authorizer

# message types and flags (awscrt.eventstream.rpc)
APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE, CONNECT, CONNECT_ACK = 0, 1, 2, 3, 4, 5
CONNECTION_ACCEPTED, TERMINATE_STREAM = 0x1, 0x2
# header value types (awscrt.eventstream.HeaderType)
BOOL_TRUE, BOOL_FALSE, BYTE, INT16, INT32, INT64, BYTE_BUF, STRING, TIMESTAMP, UUID = range(10)


def encode_headers(headers: dict[str, str | int]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name = name.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        if isinstance(value, int):
            out += struct.pack(">Bi", INT32, value)
        else:
            raw = value.encode()
            out += struct.pack(">BH", STRING, len(raw)) + raw
    return bytes(out)


def decode_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        name_len = data[pos]
        name = data[pos + 1 : pos + 1 + name_len].decode()
        pos += 1 + name_len
        kind = data[pos]
        pos += 1
        value: Any
        if kind in (BOOL_TRUE, BOOL_FALSE):
            value = kind == BOOL_TRUE
        elif kind == BYTE:
            value = struct.unpack_from(">b", data, pos)[0]
            pos += 1
        elif kind == INT16:
            value = struct.unpack_from(">h", data, pos)[0]
            pos += 2
        elif kind == INT32:
            value = struct.unpack_from(">i", data, pos)[0]
            pos += 4
        elif kind in (INT64, TIMESTAMP):
            value = struct.unpack_from(">q", data, pos)[0]
            pos += 8
        elif kind in (BYTE_BUF, STRING):
            (length,) = struct.unpack_from(">H", data, pos)
            raw = data[pos + 2 : pos + 2 + length]
            value = raw.decode() if kind == STRING else bytes(raw)
            pos += 2 + length
        elif kind == UUID:
            value = bytes(data[pos : pos + 16])
            pos += 16
        else:
            raise ValueError(f"unknown header type {kind}")
        headers[name] = value
    return headers


def encode_message(headers: dict[str, str | int], payload: bytes = b"") -> bytes:
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def read_message(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    prelude = _recv_exactly(sock, 12)
    if prelude is None:
        return None
    total, headers_len, prelude_crc = struct.unpack(">III", prelude)
    if zlib.crc32(prelude[:8]) != prelude_crc:
        raise ValueError("prelude CRC mismatch")
    rest = _recv_exactly(sock, total - 12)
    if rest is None:
        return None
    (message_crc,) = struct.unpack(">I", rest[-4:])
    if zlib.crc32(prelude + rest[:-4]) != message_crc:
        raise ValueError("message CRC mismatch")
    headers = decode_headers(rest[:headers_len])
    return headers, rest[headers_len:-4]


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


@dataclass
class Published:
    topic: str
    payload: bytes
    qos: str


@dataclass
class _Connection:
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    config_streams: list[int] = field(default_factory=list)

    def send(self, headers: dict[str, str | int], payload: bytes = b"") -> None:
        with self.lock:
            self.sock.sendall(encode_message(headers, payload))


class TestNucleus:
    """Start with :meth:`start`; point the client at it with :meth:`env`."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        component: str,
        config: dict[str, Any],
        svcuid: str = "test-svcuid-0123456789",
        socket_path: str | None = None,
    ) -> None:
        self.component = component
        self.config = config
        self.svcuid = svcuid
        # AF_UNIX paths are limited to ~108 bytes: a short temporary folder unless the caller chose the path
        self.folder = os.path.dirname(socket_path) if socket_path else tempfile.mkdtemp(prefix="gg-")
        self.socket_path = socket_path or os.path.join(self.folder, "ipc.socket")
        self.published: list[Published] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.rejected_connects = 0
        self.fail_publishes = 0
        """How many of the next feature publishes to answer with an error (fault injection)."""
        self.authorizer: Authorizer | None = None
        """IPC authorization from the component's accessControl; None serves every request."""
        self.forward: Callable[[str, bytes, str], None] | None = None
        """Where PublishToIoTCore goes (IoT Core on a real core); raising fails the request."""
        self.refused: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self._connections: list[_Connection] = []
        self._server: socket.socket | None = None
        self._stop = threading.Event()

    def env(self) -> dict[str, str]:
        return {"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": self.socket_path, "SVCUID": self.svcuid}

    def start(self) -> TestNucleus:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.socket_path)
        os.chmod(self.socket_path, 0o666)  # util/Permissions.setIpcSocketPermission: any local user may connect
        server.listen(8)
        server.settimeout(0.2)
        self._server = server
        threading.Thread(target=self._accept, name="nucleus-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.sock.close()
        try:
            os.unlink(self.socket_path)
            os.rmdir(self.folder)
        except OSError:
            pass

    # --- test controls -----------------------------------------------------------------------------
    def wait_published(self, count: int, timeout: float = 10.0) -> list[Published]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.published) >= count, timeout)
            return list(self.published)

    def wait_subscribers(self, count: int = 1, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: sum(len(c.config_streams) for c in self._connections) >= count, timeout)

    def update_config(self, changes: dict[str, Any], key_path: list[str]) -> None:
        """Change the component configuration and notify subscribers, as a deployment would."""
        with self._cond:
            _merge(self.config, changes)
            connections = list(self._connections)
        event = {"configurationUpdateEvent": {"componentName": self.component, "keyPath": key_path}}
        for conn in connections:
            for stream_id in list(conn.config_streams):
                conn.send(
                    _app_headers(stream_id, "aws.greengrass#ConfigurationUpdateEvents"), json.dumps(event).encode()
                )

    def replace_config(self, config: dict[str, Any], notify: bool, previous: dict[str, Any] | None = None) -> None:
        """A deployment's new configuration; with ``notify``, one ConfigurationUpdateEvents per changed top key."""
        with self._cond:
            self.config = config
            connections = list(self._connections)
        if not notify:
            return
        old = previous or {}
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        for key in changed:
            event = {"configurationUpdateEvent": {"componentName": self.component, "keyPath": [key]}}
            for conn in connections:
                for stream_id in list(conn.config_streams):
                    conn.send(
                        _app_headers(stream_id, "aws.greengrass#ConfigurationUpdateEvents"), json.dumps(event).encode()
                    )

    # --- server ------------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            conn = _Connection(sock)
            with self._cond:
                self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), name="nucleus-conn", daemon=True).start()

    def _serve(self, conn: _Connection) -> None:
        try:
            while not self._stop.is_set():
                message = read_message(conn.sock)
                if message is None:
                    return
                self._handle(conn, *message)
        except OSError:
            return
        finally:
            with self._cond:
                if conn in self._connections:
                    self._connections.remove(conn)
            conn.sock.close()

    def _handle(self, conn: _Connection, headers: dict[str, Any], payload: bytes) -> None:
        kind = headers.get(":message-type")
        stream_id = int(headers.get(":stream-id", 0))
        if kind == CONNECT:
            token = json.loads(payload or b"{}").get("authToken")
            accepted = token == self.svcuid
            if not accepted:
                self.rejected_connects += 1
            conn.send(
                {
                    ":message-type": CONNECT_ACK,
                    ":message-flags": CONNECTION_ACCEPTED if accepted else 0,
                    ":stream-id": 0,
                }
            )
            return
        if kind == PING:
            conn.send({":message-type": PING_RESPONSE, ":message-flags": 0, ":stream-id": 0})
            return
        if kind != APPLICATION_MESSAGE or "operation" not in headers:
            return  # stream close from the client, or something we do not serve
        operation = headers["operation"]
        request = json.loads(payload or b"{}")
        with self._cond:
            self.requests.append((operation, request))
        if operation == "aws.greengrass#PublishToIoTCore":
            topic = str(request.get("topicName", ""))
            if self.authorizer is not None and not self.authorizer.is_authorized(
                MQTT_PROXY, self.component, operation, topic
            ):
                self._send_error(conn, stream_id, "aws.greengrass#UnauthorizedError", UNAUTHORIZED_ERROR)
                with self._cond:
                    self.refused.append((operation, topic))
                return
            if self.fail_publishes > 0 and topic.endswith("/features"):
                self.fail_publishes -= 1
                self._send_error(conn, stream_id, "aws.greengrass#ServiceError", "injected failure")
                return
            payload_bytes = base64.b64decode(request.get("payload", ""))
            if self.forward is not None:
                try:
                    self.forward(topic, payload_bytes, str(request.get("qos", "")))
                except Exception as exc:
                    message = f"Publish to topic {topic} failed: {exc}"
                    self._send_error(conn, stream_id, "aws.greengrass#ServiceError", message)
                    return
            with self._cond:
                self.published.append(Published(topic, payload_bytes, request.get("qos", "")))
                self._cond.notify_all()
            conn.send(_app_headers(stream_id, "aws.greengrass#PublishToIoTCoreResponse", flags=TERMINATE_STREAM), b"{}")
        elif operation == "aws.greengrass#GetConfiguration":
            with self._cond:
                value: Any = self.config
                for key in request.get("keyPath") or []:
                    value = value.get(key, {}) if isinstance(value, dict) else {}
                body = {"componentName": request.get("componentName") or self.component, "value": value}
            conn.send(
                _app_headers(stream_id, "aws.greengrass#GetConfigurationResponse", flags=TERMINATE_STREAM),
                json.dumps(body).encode(),
            )
        elif operation == "aws.greengrass#SubscribeToConfigurationUpdate":
            conn.send(_app_headers(stream_id, "aws.greengrass#SubscribeToConfigurationUpdateResponse"), b"{}")
            with self._cond:
                conn.config_streams.append(stream_id)
                self._cond.notify_all()
        else:
            conn.send(
                _app_headers(stream_id, "aws.greengrass#UnauthorizedError", APPLICATION_ERROR, TERMINATE_STREAM),
                json.dumps({"message": f"{operation} is not served by the test nucleus"}).encode(),
            )

    def _send_error(self, conn: _Connection, stream_id: int, model: str, message: str) -> None:
        """``OperationContinuationHandler.sendModeledError``: ApplicationError + TerminateStream, JSON body."""
        conn.send(
            _app_headers(stream_id, model, APPLICATION_ERROR, TERMINATE_STREAM),
            json.dumps({"message": message}).encode(),
        )


def _app_headers(stream_id: int, model: str, kind: int = APPLICATION_MESSAGE, flags: int = 0) -> dict[str, str | int]:
    return {
        ":message-type": kind,
        ":message-flags": flags,
        ":stream-id": stream_id,
        ":content-type": "application/json",
        "service-model-type": model,
    }


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
