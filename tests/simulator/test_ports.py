"""Port probing the way the servers bind: a port in TIME_WAIT is free, a listening one is named with its holder."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from simulator.stack.processes import port_holder, port_in_use

TIME_WAIT = "06"  # include/net/tcp_states.h: TCP_TIME_WAIT


def time_wait_on(port: int) -> bool:
    """Is a socket with local ``port`` in TIME_WAIT (/proc/net/tcp, IPv4)?"""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == TIME_WAIT:
            return True
    return False


def plain_bind_fails(port: int) -> bool:
    """The probe ``stack up`` used to run: bind without SO_REUSEADDR."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server closes first, as a stopping broker does: its end waits in TIME_WAIT
    client.close()
    listener.close()
    assert time_wait_on(port)
    assert plain_bind_fails(port)  # what made `stack up` refuse for a minute after every restart
    assert port_in_use("127.0.0.1", port) is None


def test_a_listening_port_is_in_use_and_its_holder_is_named() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        error = port_in_use("127.0.0.1", port)
        assert isinstance(error, OSError)
        holder = port_holder(port)
    assert holder is not None and holder.startswith(f"pid {os.getpid()} (")  # our own fds are always readable
