"""Catalog sources: local folder and S3 (moto), and indexing straight from S3."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import boto3
import cv2
import numpy as np
import pytest
from moto import mock_aws

from cloud_lambda.catalog.indexer import IndexOptions, run_index
from cloud_lambda.catalog.layout import load_catalog
from cloud_lambda.catalog.sources import CatalogSourceError, LocalFolderSource, S3Source, download_prefix, upload_folder
from tests.cloud_lambda.conftest import smooth_image


@pytest.fixture
def aws(monkeypatch):
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("s3")


def test_local_folder_lists_recursively_and_skips_hidden(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    (tmp_path / "b.png").write_bytes(b"22")
    (tmp_path / ".hidden.jpg").write_bytes(b"3")
    (tmp_path / "items.jsonl").write_text("{}")
    source = LocalFolderSource(tmp_path)
    assert [(i.key, i.size) for i in source.list()] == [("a/x.jpg", 1), ("b.png", 2)]
    assert source.read("a/x.jpg") == b"1"
    with pytest.raises(CatalogSourceError):
        source.read("../../etc/passwd")
    with pytest.raises(CatalogSourceError):
        LocalFolderSource(tmp_path / "nope")


def test_s3_source_lists_pages_and_pickles(aws):
    aws.create_bucket(Bucket="cat")
    for i in range(1005):  # more than one ListObjectsV2 page
        aws.put_object(Bucket="cat", Key=f"imgs/{i:04d}.jpg", Body=b"x")
    aws.put_object(Bucket="cat", Key="other/0.jpg", Body=b"x")
    source = S3Source("s3://cat/imgs")
    items = source.list()
    assert len(items) == 1005 and items[0].key == "0000.jpg"
    assert source.read("0003.jpg") == b"x"
    clone = pickle.loads(pickle.dumps(source))
    assert clone.uri == "s3://cat/imgs/" and clone._client is None
    with pytest.raises(CatalogSourceError):
        source.read("missing.jpg")


def test_index_from_s3_upload_and_lambda_download(aws, tiny_model, tiny_featurizer, tmp_path: Path):
    aws.create_bucket(Bucket="cat")
    for i in range(5):
        aws.put_object(Bucket="cat", Key=f"imgs/p{i}.png", Body=cv2.imencode(".png", smooth_image(i))[1].tobytes())
    aws.put_object(Bucket="cat", Key="imgs/bad.jpg", Body=b"text")
    out = tmp_path / "index"
    # workers=0: in-process, because moto's mock (and this client) exist in this process only.
    source = S3Source("s3://cat/imgs", aws)
    options = IndexOptions(source="s3://cat/imgs", out=out, model=tiny_model, workers=0, progress=False)
    result = run_index(options, featurizer=tiny_featurizer, source=source)
    assert result.summary["indexed"] == 5 and result.summary["rejects_by_reason"] == {"not_image": 1}
    assert upload_folder(out, "s3://cat/index/v1", aws) == len(list(out.iterdir()))
    local = download_prefix("s3://cat/index/v1", tmp_path / "dl", aws)
    catalog = load_catalog(local)
    assert catalog.ids == [f"p{i}" for i in range(5)]
    np.testing.assert_array_equal(np.load(local / "vectors.npy"), np.load(out / "vectors.npy"))
    assert json.loads((local / "manifest.json").read_text())["model_id"] == tiny_featurizer.model_id
