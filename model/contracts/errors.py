"""The project's one error base, and the shape of a refusal: a ``reason`` code plus a message.

Every error the project raises on purpose derives from :class:`VisualSearchError` (each class also keeps the
built-in base it had, ``ValueError`` or ``RuntimeError``, so existing ``except`` clauses still hold), so a
caller can tell ours from a library's and always finds a short ``reason`` for counters and log fields.
``tests/model/contracts/test_reasons.py`` checks that every exception class in product code is under it. Input refused at a
door (a feature or status message, an MQTT topic, a rule event) raises :class:`Rejected` with one of the
codes listed in :mod:`model.contracts.reasons`; the message says what was wrong for a person.
"""

from __future__ import annotations


class VisualSearchError(Exception):
    """Base of the project's errors. ``reason`` is a short code for counters and logs (the class default
    unless the raiser names a more precise one)."""

    reason: str = "error"

    def __init__(self, *args: object, reason: str | None = None) -> None:
        super().__init__(*args)
        if reason is not None:
            self.reason = reason


class Rejected(VisualSearchError, ValueError):
    """Input that breaks a contract: rejected, logged with ``reason`` and counted, never half-processed.

    The reason comes first because it is what the caller counts (``Rejected("oversize", "payload is ...")``);
    it must be one of :data:`model.contracts.reasons.REASONS`.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
