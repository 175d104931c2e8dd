"""Run a command in its own network namespace with only loopback up: ``python isolated_net.py CMD ARGS...``.

README's commands use the default ports (1883, 6379, 8080); on a shared machine or a CI runner another
program may hold them. In a private network namespace they are always free and nothing outside is touched,
so the commands can run exactly as written. As root: ``unshare(CLONE_NEWNET)``; otherwise a user namespace
that maps the caller's own uid and gid (unprivileged, where the kernel allows user namespaces). The loopback
interface of a new namespace is down: it is brought up with ``SIOCSIFFLAGS`` before ``exec`` (capabilities in
the new namespace last until then).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def enter() -> None:
    """Move this process into a new network namespace with loopback up; raises OSError when not allowed."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWNET | CLONE_NEWUSER
    if libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare: {os.strerror(errno)}")
    if uid != 0:
        # user_namespaces(7): an unprivileged process may map only its own ids, after denying setgroups.
        with open("/proc/self/setgroups", "w") as handle:
            handle.write("deny")
        with open("/proc/self/uid_map", "w") as handle:
            handle.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as handle:
            handle.write(f"{gid} {gid} 1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh", b"lo", 0)
        current = struct.unpack("16sh", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh", b"lo", current | IFF_UP))


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python isolated_net.py CMD [ARGS...]", file=sys.stderr)
        return 2
    try:
        enter()
    except OSError as exc:
        print(f"isolated_net: no private network namespace here: {exc}", file=sys.stderr)
        return 97
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
