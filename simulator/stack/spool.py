"""A durable FIFO of MQTT messages the rule bridge has taken from the broker but could not store yet.

The bridge acks a message to the broker only once it is stored in Redis or written here (fsync'd), so a
message is never acked away unstored: a Redis that refuses writes (``maxmemory``, ``READONLY``) or stays down
longer than the retry budget parks messages here, and they are replayed in order when it is back. In AWS the
same promise is the search function's failure destination (an SQS queue and a replay command: docs/cloud.md).

File format: ``spool.bin`` holds records ``<u32 topic length><u32 payload length><topic><payload>`` appended
at the end; ``spool.head`` holds the offset of the first record not yet replayed (rewritten atomically). A
record torn by a crash mid-append was never acked: it is cut off on open, and the broker redelivers it.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from pathlib import Path

from model.contracts.errors import VisualSearchError

HEADER = struct.Struct("<II")
MAX_TOPIC_BYTES = 65_535
DEFAULT_MAX_BYTES = 1024**3


class SpoolError(VisualSearchError, RuntimeError):
    """The spool folder cannot be used (not writable, or damaged beyond a torn last record)."""


class Spool:
    """Append at the tail, read and pop at the head; every change is on disk before the call returns."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._data_path = folder / "spool.bin"
        self._head_path = folder / "spool.head"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self._data_path, "a+b")  # noqa: SIM115 - kept open for the spool's life
        except OSError as exc:
            raise SpoolError(f"spool folder {folder} is not usable: {exc.strerror or exc}") from exc
        self._offsets: deque[int] = deque()
        self._end = 0
        self._load()

    # --- queries --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def bytes_used(self) -> int:
        return self._end - (self._offsets[0] if self._offsets else self._end)

    def peek(self) -> tuple[str, bytes] | None:
        """The oldest message, or None when the spool is empty."""
        if not self._offsets:
            return None
        topic, payload, _ = self._read_at(self._offsets[0])
        return topic, payload

    # --- changes --------------------------------------------------------------------------------------
    def append(self, topic: str, payload: bytes) -> bool:
        """Write one message durably; False (nothing written) when the spool would pass ``max_bytes``."""
        encoded = topic.encode("utf-8")
        if len(encoded) > MAX_TOPIC_BYTES:
            raise ValueError(f"topic of {len(encoded)} bytes is over {MAX_TOPIC_BYTES}")
        record = HEADER.pack(len(encoded), len(payload)) + encoded + payload
        if self.bytes_used + len(record) > self.max_bytes:
            return False
        self._file.seek(self._end)
        self._file.write(record)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._offsets.append(self._end)
        self._end += len(record)
        return True

    def pop(self) -> None:
        """Drop the oldest message (it is stored now). An emptied spool is truncated to nothing."""
        if not self._offsets:
            raise IndexError("pop from an empty spool")
        self._offsets.popleft()
        if self._offsets:
            self._write_head(self._offsets[0])
        else:
            self._file.truncate(0)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._end = 0
            self._write_head(0)

    def close(self) -> None:
        self._file.close()

    # --- internals ------------------------------------------------------------------------------------
    def _load(self) -> None:
        size = os.fstat(self._file.fileno()).st_size
        head = self._read_head()
        if not 0 <= head <= size:
            raise SpoolError(f"{self._head_path} points past the end of {self._data_path}: delete the spool folder")
        offset = head
        while offset < size:
            try:
                _, _, length = self._read_at(offset)  # _Torn: the record ends before its declared length
            except _Torn:
                break
            self._offsets.append(offset)
            offset += length
        if offset < size:  # a torn last record: it was never acked (the broker still has it)
            self._file.truncate(offset)
        self._end = offset

    def _read_at(self, offset: int) -> tuple[str, bytes, int]:
        self._file.seek(offset)
        header = self._file.read(HEADER.size)
        if len(header) < HEADER.size:
            raise _Torn
        topic_len, payload_len = HEADER.unpack(header)
        body = self._file.read(topic_len + payload_len)
        if len(body) < topic_len + payload_len:
            raise _Torn
        try:
            topic = body[:topic_len].decode("utf-8")
        except UnicodeDecodeError:
            raise _Torn from None
        return topic, body[topic_len:], HEADER.size + topic_len + payload_len

    def _read_head(self) -> int:
        try:
            raw = self._head_path.read_bytes()
        except FileNotFoundError:
            return 0
        return int.from_bytes(raw[:8], "little") if len(raw) >= 8 else 0

    def _write_head(self, offset: int) -> None:
        tmp = self._head_path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            handle.write(offset.to_bytes(8, "little"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._head_path)


class _Torn(VisualSearchError):
    """A record that ends before its declared length."""
