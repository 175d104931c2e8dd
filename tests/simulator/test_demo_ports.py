"""`make demo` keeps README's ports, and says so loudly when another program holds one."""

from __future__ import annotations

import io
import os
import socket

from simulator.demo import choose_ports
from simulator.stack.processes import free_port


def test_a_taken_port_is_replaced_loudly_and_free_or_own_ports_are_kept() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        free = free_port()
        out = io.StringIO()
        chosen = choose_ports("127.0.0.1", {"http_port": taken, "mqtt_port": free}, out=out)
        assert chosen == {"http_port": 0, "mqtt_port": free}
        message = out.getvalue()
        assert f"port {taken} (web app) is taken by pid {os.getpid()}" in message
        assert "README's addresses do not apply" in message

        # The demo's own running stack holds it: that is not "taken".
        quiet = io.StringIO()
        assert choose_ports("127.0.0.1", {"http_port": taken}, own={taken}, out=quiet) == {"http_port": taken}
        assert quiet.getvalue() == ""
