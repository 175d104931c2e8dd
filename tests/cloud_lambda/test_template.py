"""The SAM template: cfn-lint clean (and the check can fail), least privilege, thing-scoped IoT policy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str

TEMPLATE = Path(__file__).resolve().parents[2] / "cloud_lambda" / "template.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CFN_LINT), str(path)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, errors = decode_str(TEMPLATE.read_text())
    assert not errors
    return parsed


def test_cfn_lint_clean_and_able_to_fail(tmp_path: Path):
    result = lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("!GetAtt RuleErrorLogGroup.Arn", "!GetAtt RuleErrorLogGrup.Arn"))
    assert lint(broken).returncode != 0


def _statements(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            found.append(node)
        for value in node.values():
            found += _statements(value)
    elif isinstance(node, list):
        for value in node:
            found += _statements(value)
    return found


def test_no_wildcard_actions_or_resources(template):
    statements = [s for s in _statements(template["Resources"]) if s["Effect"] == "Allow"]
    assert len(statements) >= 10
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(a != "*" and not a.endswith(":*") for a in actions), statement
        resources = statement.get("Resource")
        resources = resources if isinstance(resources, list) else [resources]
        assert all(r != "*" for r in resources if r is not None), statement


def test_iot_policy_scopes_each_thing_to_its_own_topics(template):
    policy = template["Resources"]["CameraIotPolicy"]["Properties"]["PolicyDocument"]
    text = str(policy)
    resources = re.findall(r"'(arn:\$\{AWS::Partition\}:iot:[^']+)'", text)
    assert len(resources) == 6
    publish = next(st for st in policy["Statement"] if st["Action"] == "iot:Publish")["Resource"]
    topics = sorted(str(r).rsplit("/", 1)[1].rstrip("'}") for r in publish)
    assert topics == ["features", "status", "thumbnail"]  # the device's opt-in thumbnail publish is allowed
    for arn in resources:
        assert "${!iot:Connection.Thing.ThingName}" in arn, arn
        assert "+" not in arn and "#" not in arn
    actions = {s["Action"] for s in policy["Statement"]}
    assert actions == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}


def test_rules_lambda_api_batch_and_parameters(template):
    resources = template["Resources"]
    sql = resources["FeaturesRule"]["Properties"]["TopicRulePayload"]["Sql"]
    assert sql == "SELECT *, topic(2) AS topic_device FROM 'visualsearch/+/features'"
    assert "'status' AS topic_kind" in resources["StatusRule"]["Properties"]["TopicRulePayload"]["Sql"]
    thumbnails = resources["ThumbnailRule"]["Properties"]["TopicRulePayload"]["Sql"]
    assert thumbnails == "SELECT *, topic(2) AS topic_device, 'thumbnail' AS topic_kind FROM 'visualsearch/+/thumbnail'"
    kinds = {r["Type"] for r in resources.values()}
    assert {
        "AWS::Serverless::Function",
        "AWS::Serverless::HttpApi",
        "AWS::DynamoDB::Table",
        "AWS::ElastiCache::ReplicationGroup",
        "AWS::S3::Bucket",
        "AWS::Batch::JobDefinition",
        "AWS::Batch::JobQueue",
        "AWS::Batch::ComputeEnvironment",
        "AWS::Lambda::Permission",
        "AWS::IoT::Policy",
    } <= kinds
    assert resources["SearchFunction"]["Properties"]["ImageConfig"]["Command"] == [
        "cloud_lambda.search.handler.lambda_handler"
    ]
    assert resources["ApiFunction"]["Properties"]["ImageConfig"]["Command"] == [
        "cloud_lambda.api.handler.lambda_handler"
    ]
    job = resources["CatalogIndexJob"]["Properties"]
    command = job["ContainerProperties"]["Command"]
    assert command[:2] == ["catalog", "index"] and "--shard-count" in command
    # Every parameter the job declares reaches the command line (metadata was declared but never passed).
    for name in job["Parameters"]:
        assert f"Ref::{name}" in command, name
    assert command[command.index("--metadata") + 1] == "Ref::metadata"
    # No hard-coded account ids, subnets, VPCs or endpoints.
    text = TEMPLATE.read_text()
    assert not re.search(r"\b\d{12}\b(?!\.dkr)", text.replace("123456789012.dkr", ""))
    assert not re.search(r"\b(subnet|vpc|sg)-[0-9a-f]{8,}\b", text)
    assert {"VpcId", "PrivateSubnetIds", "ImageUri", "IotDataEndpoint"} <= set(template["Parameters"])


def test_batch_command_parses_with_the_real_cli(template):
    """The Batch job's command line is accepted by `visual-search catalog index` as written."""
    from model.hub import build_parser

    command = template["Resources"]["CatalogIndexJob"]["Properties"]["ContainerProperties"]["Command"]
    argv = [c if isinstance(c, str) else "s3://bucket/models/m.onnx" for c in command]
    argv = [a.replace("Ref::source", "s3://b/catalog/").replace("Ref::shards", "4") for a in argv]
    argv = [a.replace("Ref::metadata", "s3://b/catalog/items.jsonl") for a in argv]
    args = build_parser(argv).parse_args(argv)
    assert args.shard_count == 4 and args.upload is not None
    assert args.metadata == "s3://b/catalog/items.jsonl"


def test_failed_searches_go_to_an_on_failure_queue(template):
    """IoT invokes the search function asynchronously: Lambda retries twice, then records the failure in SQS."""
    resources = template["Resources"]
    function = resources["SearchFunction"]["Properties"]
    config = function["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2 and 60 <= config["MaximumEventAgeInSeconds"] <= 21600
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS" and on_failure["Destination"] == {"Fn::GetAtt": ["SearchFailureQueue", "Arn"]}
    queue = resources["SearchFailureQueue"]
    assert queue["Type"] == "AWS::SQS::Queue" and "FifoQueue" not in queue["Properties"]  # FIFO is not supported
    assert queue["Properties"]["MessageRetentionPeriod"] == 1209600
    # The execution role may send to that queue and nowhere else.
    statements = [st for policy in function["Policies"] for st in policy["Statement"]]
    send = [st for st in statements if "sqs:SendMessage" in str(st["Action"])]
    assert send == [
        {
            "Sid": "SendFailedInvocationRecords",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["SearchFailureQueue", "Arn"]},
        }
    ]
    assert template["Outputs"]["SearchFailureQueueUrl"]["Value"] == {"Ref": "SearchFailureQueue"}
