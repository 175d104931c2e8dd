"""One terminal shared by lines that scroll (match records) and one status line that updates in place (the
progress of work running beside them), without either garbling the other.

On a terminal the status line sits below the scrolling lines: a new line first clears it (``\\r`` + erase to
end of line), is printed, and the status is drawn again under it. Elsewhere (a pipe, a log file, a test) an
in-place update would leave ``\\r`` debris, so the status is printed as an ordinary line, and only when its
``milestone`` changes (a new stage, the next quarter), so a log keeps a readable trace of the work.
"""

from __future__ import annotations

import shutil
import sys
import threading
from typing import TextIO

CLEAR = "\r\x1b[K"
"""Carriage return, then ANSI "erase to end of line" (ECMA-48 EL 0): the status line's text is gone."""


class Console:
    def __init__(self, out: TextIO | None = None, tty: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self._lock = threading.Lock()
        self._status = ""
        self._milestone: str | None = None

    def line(self, text: str) -> None:
        """A line that stays (scrolls up); the status line, if any, is drawn again below it."""
        with self._lock:
            if self.tty and self._status:
                self.out.write(CLEAR + text + "\n" + self._status)
            else:
                self.out.write(text + "\n")
            self.out.flush()

    def status(self, text: str, milestone: str | None = None) -> None:
        """Replace the status line with ``text`` (off a terminal: print it when ``milestone`` changed)."""
        with self._lock:
            if self.tty:
                self._status = text[: max(20, shutil.get_terminal_size().columns - 1)]
                self.out.write(CLEAR + self._status)
            elif milestone != self._milestone:
                self._milestone = milestone
                self.out.write(text + "\n")
            self.out.flush()

    def clear_status(self) -> None:
        """Remove the status line (the work it described is over)."""
        with self._lock:
            if self.tty and self._status:
                self.out.write(CLEAR)
                self.out.flush()
            self._status = ""
            self._milestone = None
