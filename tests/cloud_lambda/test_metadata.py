"""Metadata stores behind one interface: SQLite (real file) and DynamoDB (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from cloud_lambda.metadata import ItemRecord, MetadataError, MetadataStore, open_metadata_store
from cloud_lambda.metadata.dynamodb_store import DynamoDbStore


def records(n: int, model_id: str = "tiny-test-fp32-abcdef12") -> list[ItemRecord]:
    return [
        ItemRecord(
            id=f"sku-{i:04d}",
            model_id=model_id,
            title=f"Item {i} — “quoted” it's",
            image_url=f"https://x/{i}.jpg",
            extra={"price": i, "tags": ["a", "b"]},
        )
        for i in range(n)
    ]


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path: Path, monkeypatch) -> Iterator[MetadataStore]:
    if request.param == "sqlite":
        store = open_metadata_store(f"sqlite:///{tmp_path}/meta.sqlite")
        yield store
        store.close()
        return
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="items",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield open_metadata_store("dynamodb://items")


def test_put_and_batch_get(store: MetadataStore):
    items = records(250)  # more than one BatchGetItem (100 keys) and BatchWriteItem (25) call
    assert store.put_many(items) == 250
    assert store.count() == 250
    wanted = [f"sku-{i:04d}" for i in (0, 5, 199, 249)] + ["missing", "sku-0005"]
    got = store.get_many(wanted)
    assert set(got) == {"sku-0000", "sku-0005", "sku-0199", "sku-0249"}
    assert got["sku-0199"] == items[199]
    assert all(r.model_id == "tiny-test-fp32-abcdef12" for r in got.values())
    ids = [f"sku-{i:04d}" for i in range(250)]
    assert len(store.get_many(ids)) == 250
    store.put_many([items[0].model_copy(update={"title": "new"})])
    assert store.get_many(["sku-0000"])["sku-0000"].title == "new"


def test_dynamodb_retries_unprocessed_keys():
    class FlakyClient:
        def __init__(self) -> None:
            self.calls = 0

        def batch_get_item(self, RequestItems):
            self.calls += 1
            keys = RequestItems["t"]["Keys"]
            if self.calls == 1:  # DynamoDB under throttling answers part and returns the rest as unprocessed
                return {"Responses": {"t": []}, "UnprocessedKeys": {"t": {"Keys": keys}}}
            item = {
                "id": {"S": "a"},
                "model_id": {"S": "m"},
                "title": {"S": "A"},
                "image_url": {"S": ""},
                "extra": {"S": "{}"},
            }
            return {"Responses": {"t": [item]}, "UnprocessedKeys": {}}

    client = FlakyClient()
    store = DynamoDbStore("t", client=client)
    assert store.get_many(["a"])["a"].title == "A"
    assert client.calls == 2


def test_open_errors(tmp_path: Path):
    with pytest.raises(MetadataError, match="does not exist"):
        open_metadata_store("", tmp_path)
    with pytest.raises(MetadataError, match="unknown metadata store"):
        open_metadata_store("postgres://x")
