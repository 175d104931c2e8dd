"""The record Lambda sends to the search function's OnFailure destination, parsed and checked.

Shape (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html, "Example
invocation record"; for an SQS destination the record is the message body)::

    {"version": "1.0", "timestamp": "2019-11-14T18:16:05.568Z",
     "requestContext": {"requestId": "...", "functionArn": "...:function:my-function:$LATEST",
                        "condition": "RetriesExhausted", "approximateInvokeCount": 3},
     "requestPayload": {...the event the function was invoked with...},
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
     "responsePayload": {"errorMessage": "...", "errorType": "...", "stackTrace": [...]}}

``condition`` is ``RetriesExhausted`` (the function failed every attempt) or ``EventAgeExceeded`` (the event
waited longer than ``MaximumEventAgeInSeconds``; then there may be no response at all).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from model.contracts.errors import VisualSearchError

CONDITIONS = frozenset({"RetriesExhausted", "EventAgeExceeded"})


class BadRecord(VisualSearchError, ValueError):
    """A message that is not a failed-invocation record of an asynchronous invocation."""


@dataclass(frozen=True)
class FailedInvocation:
    request_id: str
    function_arn: str
    condition: str
    attempts: int
    payload: dict[str, Any]
    """The original event (an IoT rule event: the device's message plus ``topic_device``)."""
    error: str
    """``errorType: errorMessage`` of the last attempt, or the condition when there was no response."""

    def describe(self) -> dict[str, Any]:
        """What an operator needs to decide about one record (logged and printed by ``--dry-run``)."""
        return {
            "request_id": self.request_id,
            "condition": self.condition,
            "attempts": self.attempts,
            "device_id": self.payload.get("topic_device"),
            "seq": self.payload.get("seq"),
            "kind": self.payload.get("topic_kind", "features"),
            "error": self.error[:300],
        }


def _object(raw: Any, name: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BadRecord(f"'{name}' must be an object, got {type(raw).__name__}")
    return raw


def _error(response: Any, condition: str) -> str:
    if isinstance(response, dict) and ("errorType" in response or "errorMessage" in response):
        return f"{response.get('errorType', 'Error')}: {response.get('errorMessage', '')}"
    return condition


def parse_record(body: str) -> FailedInvocation:
    """The body of one OnFailure queue message → :class:`FailedInvocation`, or :class:`BadRecord`."""
    try:
        record = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise BadRecord(f"not JSON: {str(exc)[:120]}") from exc
    record = _object(record, "record")
    context = _object(record.get("requestContext"), "requestContext")
    condition = context.get("condition")
    if condition not in CONDITIONS:
        raise BadRecord(f"requestContext.condition {str(condition)[:40]!r} is not one of {sorted(CONDITIONS)}")
    payload = _object(record.get("requestPayload"), "requestPayload")
    attempts = context.get("approximateInvokeCount", 0)
    return FailedInvocation(
        request_id=str(context.get("requestId", "")),
        function_arn=str(context.get("functionArn", "")),
        condition=str(condition),
        attempts=attempts if isinstance(attempts, int) else 0,
        payload=payload,
        error=_error(record.get("responsePayload"), str(condition)),
    )
