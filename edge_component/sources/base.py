"""Frame sources: one :class:`FrameReader` per kind of input, one :class:`FrameSource` that runs any of them.

The reader only knows how to open, read one frame and close. :class:`FrameSource` adds what every input
needs and that users complain about when it is missing: a grabber thread that keeps only the newest frame
(a slow featurizer never builds a backlog, so latency stays bounded), and a watchdog that reopens a
stalled or dropped input with exponential backoff and reports it in the status message.

Non-live inputs (a video file read as fast as possible, a folder) hand over every frame instead: the
grabber waits for the loop to take each one, so runs over a file are exact and repeatable.

Each kind of input is one file in this package whose reader class carries :func:`register_reader` and builds
itself from the configuration (``from_config``); ``source.kind`` accepts exactly the registered kinds.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np

from model.contracts.errors import VisualSearchError
from model.logs import log_event
from model.plugins import load_plugins

if TYPE_CHECKING:
    from edge_component.config import SourceConfig

log = logging.getLogger(__name__)

SourceState = Literal["starting", "ok", "reconnecting", "ended", "stopped"]


class SourceError(VisualSearchError, RuntimeError):
    """The input cannot be opened or read (the watchdog retries; the message goes to ``last_error``)."""


class EndOfStream(Exception):
    """A finite input (file, folder) has no more frames and is not looping."""


@dataclass(frozen=True)
class Frame:
    """One captured frame: BGR uint8 pixels, a capture counter and capture times."""

    image: np.ndarray
    index: int
    """Counter of frames captured by this source (across reopens), from 0."""
    captured_at: float
    """``time.monotonic()`` when the frame was read: frame age = now - captured_at."""
    wall_ts: float
    """``time.time()`` at capture, for the wire message's ``ts``."""
    prepared: np.ndarray | None = None
    """The model input made from ``image`` in the grabber thread (see :attr:`FrameSource.prepare`), or None."""
    prepare_ms: float = 0.0
    """How long the grabber spent preparing it."""
    prepare_error: str | None = None
    """Why the grabber could not prepare it (the loop reports it and skips the frame)."""


class FrameReader(ABC):
    """One kind of input. Called from the grabber thread only."""

    kind: ClassVar[str]

    @property
    def live(self) -> bool:
        """True when frames arrive on their own clock (camera, stream, real-time file): newest frame wins."""
        return True

    @abstractmethod
    def open(self) -> None:
        """Open the input; raise :class:`SourceError` with a clear reason when it cannot be opened."""

    @abstractmethod
    def read(self) -> np.ndarray:
        """Return the next BGR frame; raise :class:`SourceError` when the input failed or
        :class:`EndOfStream` when a finite input is done."""

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> str:
        return self.kind

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> FrameReader:
        """The reader ``cfg`` asks for (registered kinds only)."""
        raise NotImplementedError(f"{cls.__name__} is not built from configuration")


READERS: dict[str, type[FrameReader]] = {}
"""``source.kind`` → reader class; filled by :func:`register_reader` as each module of this package loads."""
_Reader = TypeVar("_Reader", bound=type[FrameReader])


def register_reader(cls: _Reader) -> _Reader:
    READERS[cls.kind] = cls
    return cls


def source_kinds() -> list[str]:
    """Every registered ``source.kind`` (each module of this package imported once)."""
    load_plugins("edge_component.sources")
    return sorted(READERS)


class FrameSource:
    """Runs a reader in a grabber thread, keeps the newest frame, reopens on stalls and failures."""

    def __init__(
        self,
        reader: FrameReader,
        stall_timeout_s: float = 5.0,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.reader = reader
        self.stall_timeout_s = stall_timeout_s
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._last_frame_at = time.monotonic()
        self._opened_at = time.monotonic()
        self._generation = 0
        self.state: SourceState = "starting"
        self.captured = 0
        self.superseded = 0
        """Frames replaced by a newer one before the loop took them (live inputs only)."""
        self.reconnects = 0
        self.last_error: str | None = None
        self.prepare: Callable[[np.ndarray], np.ndarray | None] | None = None
        """Set by the consumer before :meth:`start`: runs in the grabber thread on each captured frame, so the
        inference thread gets a ready model input and only featurizes (preparation overlaps inference).
        Returning None hands the raw frame over unprepared (e.g. the loop would rate-skip it anyway)."""

    @property
    def kind(self) -> str:
        return self.reader.kind

    @property
    def live(self) -> bool:
        return self.reader.live

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FrameSource:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._grab, name=f"grabber-{self.kind}", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog-{self.kind}", daemon=True)
        self._watchdog.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._watchdog is not None:
            self._watchdog.join(timeout)
        if self.state != "ended":
            self.state = "stopped"

    # --- consumer side -----------------------------------------------------------------------------
    def get(self, timeout: float = 1.0) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout``; None when there is none (yet)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set() or self.state == "ended":
                    return None
                self._cond.wait(remaining)
            frame, self._latest = self._latest, None
            self._cond.notify_all()  # a non-live grabber waits for the slot to empty
            return frame

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": self.state, "reconnects": self.reconnects}

    # --- grabber thread ----------------------------------------------------------------------------
    def _grab(self) -> None:
        delay = self.reconnect_min_s
        while not self._stop.is_set():
            try:
                self.reader.open()
            except SourceError as exc:
                self._failed(f"open failed: {exc}")
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max_s)
                continue
            generation = self._generation
            self._opened_at = self._last_frame_at = time.monotonic()
            if self.state == "reconnecting":
                log_event(log, "source_reopened", source=self.reader.describe(), reconnects=self.reconnects)
            self.state = "ok"
            outcome = self._read_until_failure(generation)
            self._safe_close()
            if outcome == "ended":
                self.state = "ended"
                with self._cond:
                    self._cond.notify_all()
                log_event(log, "source_ended", source=self.reader.describe(), captured=self.captured)
                return
            if outcome == "stopped":
                return
            # A reader that failed right after opening counts towards the backoff; one that ran a while resets it.
            if time.monotonic() - self._opened_at > 10 * self.reconnect_min_s:
                delay = self.reconnect_min_s
            self._stop.wait(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    def _read_until_failure(self, generation: int) -> Literal["ended", "stopped", "failed"]:
        while not self._stop.is_set():
            if generation != self._generation:
                self.reconnects += 1  # the watchdog already reported the stall
                return "failed"
            try:
                image = self.reader.read()
            except EndOfStream:
                return "ended"
            except SourceError as exc:
                self._failed(str(exc))
                return "failed"
            except Exception as exc:  # a reader bug must not kill the grabber: report and reopen
                log_event(log, "frame_reader_raised", logging.ERROR, source=self.reader.describe(), exc_info=True)
                self._failed(f"{type(exc).__name__}: {exc}")
                return "failed"
            if generation != self._generation:
                continue  # the watchdog gave up on this read; drop it and reopen
            # Timestamp first: the frame's age includes its preparation.
            now = time.monotonic()
            frame = self._prepared(Frame(image=image, index=self.captured, captured_at=now, wall_ts=time.time()))
            self.captured += 1
            self._last_frame_at = now
            with self._cond:
                if not self.reader.live:
                    while self._latest is not None and not self._stop.is_set():
                        self._cond.wait(0.1)
                elif self._latest is not None:
                    self.superseded += 1
                self._latest = frame
                self._cond.notify_all()
        return "stopped"

    def _prepared(self, frame: Frame) -> Frame:
        if self.prepare is None:
            return frame
        started = time.perf_counter()
        try:
            prepared = self.prepare(frame.image)
        except Exception as exc:  # a bad frame is the loop's to report; the grabber carries on
            return replace(frame, prepare_error=f"{type(exc).__name__}: {exc}")
        if prepared is None:
            return frame
        return replace(frame, prepared=prepared, prepare_ms=(time.perf_counter() - started) * 1000)

    def _failed(self, reason: str) -> None:
        if self.state != "reconnecting":
            log_event(log, "source_failed", logging.WARNING, source=self.reader.describe(), error=reason)
        self.state = "reconnecting"
        self.reconnects += 1
        self.last_error = f"source {self.reader.describe()}: {reason}"

    def _safe_close(self) -> None:
        try:
            self.reader.close()
        except Exception:
            log_event(
                log, "closing_the_frame_reader_failed", logging.ERROR, source=self.reader.describe(), exc_info=True
            )

    # --- watchdog thread ---------------------------------------------------------------------------
    def _watch(self) -> None:
        """A read stuck in the capture backend cannot notice itself: mark the source stalled from here.

        Closing a capture from another thread while it reads can crash native code, so the watchdog only
        reports the stall and retires the current "generation"; stream readers set the backend's own read
        timeout, after which the grabber sees the retired generation and reopens.
        """
        while not self._stop.wait(min(0.5, self.stall_timeout_s / 4)):
            if self.state != "ok":
                continue
            with self._cond:
                waiting_on_consumer = self._latest is not None
            if waiting_on_consumer:  # a non-live source waiting on the loop is not stalled
                self._last_frame_at = time.monotonic()
                continue
            if time.monotonic() - self._last_frame_at > self.stall_timeout_s:
                self._generation += 1
                self._last_frame_at = time.monotonic()
                log_event(log, "source_stalled_reopening", logging.WARNING, source=self.reader.describe())
                self.state = "reconnecting"
                self.last_error = f"source {self.reader.describe()}: no frame for {self.stall_timeout_s:g} s (stalled)"
