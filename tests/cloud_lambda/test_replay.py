"""Replaying the search function's OnFailure queue: each record's event runs again, its message deleted only
after it was processed. SQS is moto; the Lambda invoke path is checked with botocore's Stubber."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from cloud_lambda.matches import MatchStore, MatchStoreUnavailable, connect
from cloud_lambda.search import handler
from cloud_lambda.search.failed_invocations import BadRecord, parse_record
from cloud_lambda.search.replay import Replayer, ReplayFailed, lambda_runner, local_runner, main
from simulator.stack.processes import RedisProcess
from tests.cloud_lambda.conftest import TinyCatalog, feature_event

# The example record of https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html,
# with our event as its requestPayload.
DOC_RECORD: dict[str, Any] = {
    "version": "1.0",
    "timestamp": "2019-11-14T18:16:05.568Z",
    "requestContext": {
        "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:my-function:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": {},
    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
    "responsePayload": {
        "errorMessage": "redis write failed for cam-01/1: Error 111 connecting to 127.0.0.1:6379.",
        "errorType": "MatchStoreUnavailable",
        "stackTrace": [],
    },
}


def record_for(event: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**DOC_RECORD, "requestPayload": event, **changes})


@pytest.fixture
def sqs() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("sqs", region_name="eu-west-1")
        yield client, client.create_queue(QueueName="search-failures")["QueueUrl"]


@pytest.fixture
def search_env(
    monkeypatch: pytest.MonkeyPatch, tiny_catalog: TinyCatalog, redis_server: RedisProcess, tiny_model: Path
) -> Iterator[RedisProcess]:
    """The search handler's settings, as the function's environment gives them (VS_*)."""
    monkeypatch.setenv("VS_INDEX_DIR", str(tiny_catalog.folder))
    monkeypatch.setenv("VS_REDIS_URL", redis_server.url)
    monkeypatch.setenv("VS_REDIS_TIMEOUT_S", "1")
    monkeypatch.setenv("VS_MATCH_PUBLISH", "none")
    handler.reset_service()
    yield redis_server
    handler.reset_service()


def queued(client: Any, url: str) -> int:
    attributes = client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_the_documented_record_shape_is_read() -> None:
    failed = parse_record(record_for({"topic_device": "cam-01", "seq": 4}))
    assert failed.describe() == {
        "request_id": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "condition": "RetriesExhausted",
        "attempts": 3,
        "device_id": "cam-01",
        "seq": 4,
        "kind": "features",
        "error": "MatchStoreUnavailable: redis write failed for cam-01/1: Error 111 connecting to 127.0.0.1:6379.",
    }
    # An event that waited too long has no response at all.
    aged = {**DOC_RECORD, "requestContext": {**DOC_RECORD["requestContext"], "condition": "EventAgeExceeded"}}
    aged.pop("responsePayload"), aged.pop("responseContext")
    assert parse_record(json.dumps({**aged, "requestPayload": {"seq": 1}})).error == "EventAgeExceeded"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("not json", "not JSON"),
        ("[1]", "'record' must be an object"),
        (json.dumps({**DOC_RECORD, "requestContext": {"condition": "Success"}}), "condition 'Success'"),
        (json.dumps({**DOC_RECORD, "requestPayload": "text"}), "'requestPayload' must be an object"),
    ],
)
def test_anything_else_is_not_a_record(body: str, why: str) -> None:
    with pytest.raises(BadRecord, match=why):
        parse_record(body)


def test_replay_runs_each_event_then_deletes_only_what_was_processed(
    sqs: tuple[Any, str], search_env: RedisProcess, tiny_catalog: TinyCatalog
) -> None:
    client, url = sqs
    vector = tiny_catalog.vectors[5]
    events = [feature_event(vector, tiny_catalog.model_id, "cam-r", seq=s) for s in (1, 2)]
    spoofed = {**feature_event(vector, tiny_catalog.model_id, "cam-r", seq=3), "topic_device": "cam-other"}
    status = {"v": 1, "device_id": "cam-r", "state": "online", "topic_device": "cam-r", "topic_kind": "status"}
    for event in (*events, spoofed, status):
        client.send_message(QueueUrl=url, MessageBody=record_for(event))
    client.send_message(QueueUrl=url, MessageBody="a message that is no invocation record")

    summary = Replayer(client, url, local_runner(), wait_s=0).replay()

    assert summary.counts == {"accepted": 3, "rejected": 1, "unreadable": 1}
    stored = MatchStore(connect(search_env.url)).latest("cam-r", 5)
    assert sorted(r["seq"] for r in stored) == [1, 2]
    assert queued(client, url) == 1  # only the unreadable message stays (and is visible again for a human)
    (left,) = client.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]
    assert left["Body"] == "a message that is no invocation record"


def test_a_replay_that_fails_again_keeps_the_message(
    sqs: tuple[Any, str], search_env: RedisProcess, tiny_catalog: TinyCatalog
) -> None:
    client, url = sqs
    for seq in (1, 2, 3):
        client.send_message(
            QueueUrl=url,
            MessageBody=record_for(feature_event(tiny_catalog.vectors[1], tiny_catalog.model_id, "cam-f", seq=seq)),
        )
    calls: list[int] = []
    run = local_runner()

    def flaky(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event["seq"])
        if event["seq"] == 2:  # the store fails again for this one
            raise MatchStoreUnavailable("redis write failed for cam-f/2: connection reset")
        return run(event)

    summary = Replayer(client, url, flaky, wait_s=0, visibility_s=30).replay()
    assert summary.counts == {"accepted": 2, "failed": 1}
    failed = next(r for r in summary.records if r["outcome"] == "failed")
    assert failed["seq"] == 2 and "MatchStoreUnavailable" in failed["replay_error"]
    assert sorted(calls) == [1, 2, 3]  # each message once: the failed one stays invisible for this run
    assert queued(client, url) == 1
    stored = MatchStore(connect(search_env.url)).latest("cam-f", 5)
    assert sorted(r["seq"] for r in stored) == [1, 3]


def test_dry_run_lists_without_running_or_deleting(sqs: tuple[Any, str], capsys: pytest.CaptureFixture[str]) -> None:
    client, url = sqs
    client.send_message(QueueUrl=url, MessageBody=record_for({"topic_device": "cam-d", "seq": 9}))
    assert main(["--queue", url, "--dry-run", "--wait-s", "0"], sqs=client) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"] == {"listed": 1}
    assert printed["records"][0]["device_id"] == "cam-d" and printed["records"][0]["seq"] == 9
    # Looked at, not taken: visible again at once for the real replay.
    assert len(client.receive_message(QueueUrl=url, WaitTimeSeconds=0)["Messages"]) == 1


def test_the_command_exits_non_zero_while_records_keep_failing(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    client.send_message(QueueUrl=url, MessageBody=record_for({"topic_device": "cam-e", "seq": 1}))

    def still_broken(event: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("redis still down")

    assert main(["--queue", url, "--wait-s", "0"], sqs=client, run=still_broken) == 1
    assert queued(client, url) == 1


def _invoke_response(payload: bytes, function_error: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(payload), len(payload))}
    if function_error:
        response["FunctionError"] = function_error
    return response


def test_function_mode_invokes_the_deployed_function_synchronously() -> None:
    client = boto3.client("lambda", region_name="eu-west-1")
    event = {"topic_device": "cam-l", "seq": 2}
    with Stubber(client) as stub:
        expected = {
            "FunctionName": "search-fn",
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(event).encode(),
        }
        stub.add_response("invoke", _invoke_response(b'{"status": "accepted", "seq": 2}'), expected)
        error = b'{"errorMessage": "redis write failed", "errorType": "MatchStoreUnavailable"}'
        stub.add_response("invoke", _invoke_response(error, "Unhandled"), expected)
        run = lambda_runner("search-fn", client)
        assert run(event) == {"status": "accepted", "seq": 2}
        with pytest.raises(ReplayFailed, match=r"Unhandled: .*MatchStoreUnavailable"):
            run(event)
        stub.assert_no_pending_responses()


def test_a_failed_message_visible_again_is_not_retried_in_the_same_run(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    client.send_message(QueueUrl=url, MessageBody=record_for({"topic_device": "cam-v", "seq": 1}))
    calls: list[dict[str, Any]] = []

    def broken(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event)
        raise ConnectionError("still down")

    summary = Replayer(client, url, broken, wait_s=0, visibility_s=0).replay()  # visible again at once
    assert summary.counts == {"failed": 1} and len(calls) == 1
    assert queued(client, url) == 1
