"""The project's one error base, and the shape of a refusal: a ``reason`` code plus a message.

Every error the project raises on purpose derives from :class:`VisualSearchError`, so a caller can tell
ours from a library's and always finds a short ``reason`` for counters and log fields. Input refused at a
door (a feature or status message, an MQTT topic, a rule event) raises :class:`Rejected` with one of the
codes listed in :mod:`model.contracts.reasons`; the message says what was wrong for a person.
"""

from __future__ import annotations


class VisualSearchError(Exception):
    """Base of the project's errors. ``reason`` is a short code for counters and logs (the class default
    unless the raiser names a more precise one)."""

    reason: str = "error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class Rejected(VisualSearchError, ValueError):
    """Input that breaks a contract: rejected, logged with ``reason`` and counted, never half-processed.

    The reason comes first because it is what the caller counts (``Rejected("oversize", "payload is ...")``);
    it must be one of :data:`model.contracts.reasons.REASONS`.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
