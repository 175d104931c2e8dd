"""DynamoDB metadata store: ``BatchGetItem`` reads (100 keys per call) and batched writes.

The table's partition key is ``id`` (string); every item carries ``model_id``. Unprocessed keys from a
throttled batch are retried with backoff rather than silently dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from cloud_lambda.metadata.base import ItemRecord, MetadataError, MetadataStore

BATCH_GET_LIMIT = 100
MAX_RETRIES = 8


class DynamoDbStore(MetadataStore):
    def __init__(self, table: str, client: Any = None) -> None:
        if not table:
            raise MetadataError("dynamodb table name is empty")
        import boto3

        self.table_name = table
        self._client = client or boto3.client("dynamodb")
        self._resource_table: Any = None

    def _table(self) -> Any:
        if self._resource_table is None:
            import boto3

            self._resource_table = boto3.resource("dynamodb", region_name=self._client.meta.region_name).Table(
                self.table_name
            )
        return self._resource_table

    def put_many(self, records: Iterable[ItemRecord]) -> int:
        written = 0
        # batch_writer groups 25 items per BatchWriteItem and resends unprocessed items itself.
        with self._table().batch_writer(overwrite_by_pkeys=["id"]) as batch:
            for record in records:
                batch.put_item(
                    Item={
                        "id": record.id,
                        "model_id": record.model_id,
                        "title": record.title,
                        "image_url": record.image_url,
                        "extra": json.dumps(record.extra, sort_keys=True),
                    }
                )
                written += 1
        return written

    def get_many(self, ids: Sequence[str]) -> dict[str, ItemRecord]:
        out: dict[str, ItemRecord] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self.table_name: {"Keys": [{"id": {"S": i}} for i in unique[start : start + 100]]}
            }
            for attempt in range(MAX_RETRIES):
                response = self._client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    record = _from_item(item)
                    out[record.id] = record
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(min(1.0, 0.02 * 2**attempt))
            else:
                raise MetadataError(f"dynamodb {self.table_name}: keys still unprocessed after {MAX_RETRIES} tries")
        return out

    def count(self) -> int:
        # DescribeTable's ItemCount is refreshed about every 6 hours; a scan with COUNT is exact.
        total = 0
        kwargs: dict[str, Any] = {"TableName": self.table_name, "Select": "COUNT"}
        while True:
            response = self._client.scan(**kwargs)
            total += int(response["Count"])
            if "LastEvaluatedKey" not in response:
                return total
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _from_item(item: dict[str, Any]) -> ItemRecord:
    def s(key: str) -> str:
        value = item.get(key, {})
        return str(value.get("S", "")) if isinstance(value, dict) else ""

    extra_text = s("extra") or "{}"
    try:
        extra = json.loads(extra_text)
    except json.JSONDecodeError:
        extra = {}
    return ItemRecord(id=s("id"), model_id=s("model_id"), title=s("title"), image_url=s("image_url"), extra=extra)
