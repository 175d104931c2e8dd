"""Keep a native library's warnings off the terminal: ``with filtered_stderr(LIBJPEG_WARNINGS): cv2.imdecode(...)``.

libjpeg reports recoverable problems ("Corrupt JPEG data: 507 extraneous bytes before marker 0xd9") with
``fprintf(stderr)`` from inside ``cv2.imdecode``; OpenCV installs no message hook, so the only place to catch
them is file descriptor 2. While any thread is inside the block, fd 2 points at a temporary file; when the
last one leaves, fd 2 is restored and every captured line that is not a dropped warning is written back, so
another thread's log lines are delayed by a decode, never lost. The image code reports what matters about a
file itself (``ImageRejected`` reasons), which is why these lines are noise.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

LIBJPEG_WARNINGS = (b"Corrupt JPEG data", b"Premature end of JPEG file", b"Warning: unknown JFIF revision")
"""Line prefixes of libjpeg's warnings (jerror.h JWRN_*), as its default output_message prints them."""

_lock = threading.Lock()
_depth = 0
_saved_fd: int | None = None
_capture: IO[bytes] | None = None
_drop: set[bytes] = set()


@contextmanager
def filtered_stderr(drop: tuple[bytes, ...]) -> Iterator[None]:
    """Run the block with native writes to fd 2 captured; lines starting with one of ``drop`` are discarded."""
    entered = _enter(drop)
    try:
        yield
    finally:
        if entered:
            _leave()


def _enter(drop: tuple[bytes, ...]) -> bool:
    global _depth, _saved_fd, _capture
    with _lock:
        if _depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                return False  # no usable fd 2 (a daemon): nothing to protect
            capture = tempfile.TemporaryFile()  # noqa: SIM115 - lives until the last thread leaves
            os.dup2(capture.fileno(), 2)
            _saved_fd, _capture = saved, capture
        _drop.update(drop)
        _depth += 1
        return True


def _leave() -> None:
    global _depth, _saved_fd, _capture
    with _lock:
        _depth -= 1
        if _depth or _saved_fd is None or _capture is None:
            return
        with suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(_saved_fd, 2)
        os.close(_saved_fd)
        _capture.seek(0)
        kept = [line for line in _capture.read().splitlines(keepends=True) if not line.startswith(tuple(_drop))]
        _capture.close()
        _saved_fd, _capture = None, None
        _drop.clear()
    if kept:
        os.write(2, b"".join(kept))
