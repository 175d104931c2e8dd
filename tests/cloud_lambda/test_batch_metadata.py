"""The AWS Batch index job's command line, as the template writes it, with its metadata file in S3 (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import cv2
import pytest
from cfnlint.decode import decode_str
from moto import mock_aws

from cloud_lambda.catalog.sources import CatalogSourceError, local_file
from cloud_lambda.metadata.sqlite_store import SqliteStore
from model.data.photos import load_photos
from model.hub import main
from tests.conftest import REPO_ROOT


def _batch_argv(source: str, metadata: str, model: Path, out: Path) -> list[str]:
    """The job definition's Command with its parameters substituted (the upload left out: no bucket to write)."""
    template, errors = decode_str((REPO_ROOT / "cloud_lambda" / "template.yaml").read_text())
    assert not errors
    command = template["Resources"]["CatalogIndexJob"]["Properties"]["ContainerProperties"]["Command"]
    values = {"Ref::source": source, "Ref::metadata": metadata, "Ref::shards": "1"}
    argv = [values.get(word, word) if isinstance(word, str) else str(model) for word in command]
    upload = argv.index("--upload")
    argv = argv[:upload] + argv[upload + 2 :]
    argv[argv.index("--out") + 1] = str(out)
    argv[argv.index("--workers") + 1] = "0"
    return argv


def test_index_job_reads_its_metadata_from_s3(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX", raising=False)
    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in load_photos(3):
        cv2.imwrite(str(folder / f"{name.split(':', 1)[1]}.jpg"), image)
    first = sorted(p.stem for p in folder.iterdir())[0]
    items = json.dumps({"id": "SKU-1", "file": f"{first}.jpg", "title": "From the S3 metadata file"}) + "\n"
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(Bucket="cat", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_object(Bucket="cat", Key="catalog/items.jsonl", Body=items.encode())
        argv = _batch_argv(str(folder), "s3://cat/catalog/items.jsonl", tiny_model, tmp_path / "index")
        assert main(argv) == 0
        with pytest.raises(CatalogSourceError, match=r"cannot download s3://cat/catalog/missing\.jsonl"):
            local_file("s3://cat/catalog/missing.jsonl")
    out = tmp_path / "index" / "shard-00000-of-00001"  # the job writes its shard folder under --out
    record = SqliteStore(out / "metadata.sqlite", create=False).get_many(["SKU-1"])["SKU-1"]
    assert record.title == "From the S3 metadata file"


def test_an_empty_metadata_parameter_means_none(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AWS_BATCH_JOB_ARRAY_INDEX", raising=False)
    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in load_photos(2):
        cv2.imwrite(str(folder / f"{name.split(':', 1)[1]}.jpg"), image)
    assert main(_batch_argv(str(folder), "", tiny_model, tmp_path / "index")) == 0
