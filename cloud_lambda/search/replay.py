"""``python -m cloud_lambda.search.replay --queue URL``: re-run searches that Lambda gave up on.

The IoT rules invoke the search function asynchronously; Lambda retries a failing invocation twice and then
sends the failed-invocation record to the OnFailure queue (template: ``SearchFunction.EventInvokeConfig``).
Once the cause is fixed (Redis back, index uploaded), this command reads those records and runs each original
event through the search handler again:

- ``--function NAME``: invokes the deployed search function synchronously (``RequestResponse``) — runs inside
  the VPC with the function's own settings; the operator needs ``lambda:InvokeFunction``.
- without ``--function``: calls ``cloud_lambda.search.handler.lambda_handler`` in this process, with this
  environment's ``VS_*`` settings (a shell that reaches Redis, e.g. the same image on AWS Batch or in the VPC).

A message is deleted only after its event was processed: handled (``accepted``), already stored
(``duplicate``: the (device, seq) idempotency marker makes replays safe) or refused for good (``rejected``:
bad input never succeeds). A replay that fails again leaves the message in the queue; it becomes visible again
after the visibility timeout. A message that is not a failed-invocation record is left alone and reported.
``--dry-run`` lists the records without running or deleting anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cloud_lambda.logs import get_logger
from cloud_lambda.search.failed_invocations import BadRecord, parse_record
from model.contracts.errors import VisualSearchError
from model.logs import log_event

Runner = Callable[[dict[str, Any]], dict[str, Any]]
DONE = frozenset({"accepted", "duplicate", "rejected"})
"""Handler results after which the record is finished with (and its message deleted)."""


class ReplayFailed(VisualSearchError, RuntimeError):
    """The event failed again (the handler raised, or the invoked function returned a function error)."""


@dataclass
class Summary:
    counts: Counter[str] = field(default_factory=Counter)
    records: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "records": self.records}


def local_runner() -> Runner:
    """The search handler in this process (needs this environment's ``VS_*`` settings)."""
    from cloud_lambda.search.handler import lambda_handler

    return lambda event: lambda_handler(event, None)


def lambda_runner(function_name: str, client: Any = None) -> Runner:
    """The deployed function, invoked synchronously so its result (or function error) comes back."""
    if client is None:
        import boto3

        client = boto3.client("lambda")

    def run(event: dict[str, Any]) -> dict[str, Any]:
        response = client.invoke(
            FunctionName=function_name, InvocationType="RequestResponse", Payload=json.dumps(event).encode("utf-8")
        )
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise ReplayFailed(f"{response['FunctionError']}: {body[:300].decode('utf-8', 'replace')}")
        result = json.loads(body or b"null")
        return result if isinstance(result, dict) else {"status": "unknown", "result": result}

    return run


class Replayer:
    """Reads the OnFailure queue in batches; runs, then deletes, each record's event."""

    def __init__(self, sqs: Any, queue_url: str, run: Runner | None, wait_s: int = 1, visibility_s: int = 120) -> None:
        self.sqs, self.queue_url, self.run = sqs, queue_url, run
        self.wait_s, self.visibility_s = wait_s, visibility_s
        self.log = get_logger(__name__)

    def replay(self, limit: int | None = None) -> Summary:
        """Until the queue has nothing visible or ``limit`` messages were seen. ``run=None``: list only."""
        summary = Summary()
        listed: list[str] = []
        seen: set[str | None] = set()
        while limit is None or len(summary.records) < limit:
            batch = 10 if limit is None else min(10, limit - len(summary.records))
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=batch,
                WaitTimeSeconds=self.wait_s,
                # While this run works on them nobody else sees them; a failed one comes back after this.
                VisibilityTimeout=self.visibility_s,
            ).get("Messages", [])
            # A message that failed earlier in this run and is visible again is not retried in the same run.
            fresh = [m for m in messages if m.get("MessageId") not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message.get("MessageId"))
                outcome, described = self._one(message)
                summary.counts[outcome] += 1
                summary.records.append({**described, "outcome": outcome})
                if outcome in ("listed", "unreadable"):
                    listed.append(message["ReceiptHandle"])
        for handle in listed:  # only looked at: visible again at once for the real replay or another reader
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
        return summary

    def _one(self, message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            record = parse_record(message.get("Body", ""))
        except BadRecord as exc:
            log_event(
                self.log, "replay_unreadable", logging.WARNING, message_id=message.get("MessageId"), error=str(exc)
            )
            return "unreadable", {"message_id": message.get("MessageId"), "error": str(exc)}
        described = record.describe()
        if self.run is None:
            return "listed", described
        try:
            result = self.run(record.payload)
        except Exception as exc:  # the cause is not fixed yet: keep the message for the next replay
            error = f"{type(exc).__name__}: {exc}"[:300]
            log_event(self.log, "replay_failed", logging.WARNING, **described, replay_error=error)
            return "failed", {**described, "replay_error": error}
        status = str(result.get("status"))
        if status not in DONE:
            log_event(self.log, "replay_unexpected", logging.WARNING, **described, result=str(result)[:300])
            return "failed", {**described, "result": result}
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        log_event(self.log, "replay_done", **described, result=status)
        return status, described


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cloud_lambda.search.replay",
        description="Re-run the search invocations recorded in the search function's OnFailure queue.",
    )
    parser.add_argument("--queue", required=True, help="OnFailure queue URL (stack output SearchFailureQueueUrl)")
    parser.add_argument("--function", help="invoke this deployed search function (default: the handler in-process)")
    parser.add_argument("--max", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--dry-run", action="store_true", help="list the records; run and delete nothing")
    parser.add_argument("--wait-s", type=int, default=1, help="long-poll wait per receive (0-20 s)")
    return parser


def main(argv: list[str] | None = None, sqs: Any = None, run: Runner | None = None) -> int:
    args = build_parser().parse_args(argv)
    if sqs is None:
        import boto3

        sqs = boto3.client("sqs")
    if args.dry_run:
        runner = None
    elif run is not None:
        runner = run
    else:
        runner = lambda_runner(args.function) if args.function else local_runner()
    summary = Replayer(sqs, args.queue, runner, wait_s=args.wait_s).replay(args.max)
    print(json.dumps(summary.as_dict(), indent=2, default=str))
    return 1 if summary.counts["failed"] or summary.counts["unreadable"] else 0


if __name__ == "__main__":
    sys.exit(main())
