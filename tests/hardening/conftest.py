"""Hardening fixtures: a tiny catalog, a search service on a real redis-server, and a hostile-case counter.

The counter is how the closing figures are produced: every hostile input a test feeds to a handler is
counted by kind, and the total is printed at the end of the run (and written to
``test-artifacts/hardening-cases.json``) together with the number that escaped as an exception (must be 0).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from cloud_lambda.catalog.layout import write_catalog
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.featurizer import Featurizer
from simulator.stack.processes import RedisProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CASES: Counter[str] = Counter()
ESCAPED: Counter[str] = Counter()


def count_case(kind: str) -> None:
    CASES[kind] += 1


def count_escape(kind: str) -> None:
    ESCAPED[kind] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not CASES:
        return
    total = sum(CASES.values())
    terminalreporter.write_sep("-", f"hostile cases run: {total}, escaped exceptions: {sum(ESCAPED.values())}")
    for kind, n in sorted(CASES.items()):
        terminalreporter.write_line(f"  {kind:32s} {n:6d}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "hardening-cases.json").write_text(
        json.dumps({"total": total, "escaped": sum(ESCAPED.values()), "by_kind": dict(CASES)}, indent=2)
    )


@dataclass
class Catalog:
    folder: Path
    model: Path
    model_id: str
    dim: int
    vectors: np.ndarray


def _pattern(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (128, 128), interpolation=cv2.INTER_NEAREST)


@pytest.fixture(scope="session")
def hardening_catalog(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1)
    images = [_pattern(i) for i in range(8)]
    vectors = np.stack([featurizer.featurize_frame(img) for img in images])
    ids = [f"item-{i}" for i in range(len(images))]
    records = [
        ItemRecord(id=i, model_id=featurizer.model_id, title=f"<b>{i}</b> O'Brien", image_url="", extra={}) for i in ids
    ]
    folder = tmp_path_factory.mktemp("hardening-catalog") / "index"
    write_catalog(
        folder,
        model_id=featurizer.model_id,
        dim=featurizer.dim,
        input_size=featurizer.input_size,
        ids=ids,
        vectors=vectors,
        records=records,
        index_kind="exact",
        index_params={},
        summary={"indexed": len(ids)},
        report_lines=[],
    )
    return Catalog(folder, tiny_model, featurizer.model_id, featurizer.dim, vectors)


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(workdir=tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def hardened_service(hardening_catalog: Catalog, module_redis: RedisProcess) -> Iterator[SearchService]:
    settings = CloudSettings.build(
        index_dir=str(hardening_catalog.folder),
        redis_url=module_redis.url,
        photo_model=str(hardening_catalog.model),
        top_k=3,
        redis_timeout_s=1.0,
    )
    service = SearchService(settings)
    yield service
    service.metadata.close()


@pytest.fixture(scope="module")
def redis_client(module_redis: RedisProcess) -> redis.Redis:
    return redis.Redis(host=module_redis.host, port=module_redis.port)


def redis_snapshot(client: redis.Redis) -> dict[bytes, Any]:
    """Every key with its value: 'nothing written' is checked against the whole database, not one key.

    Except the device's last-refusal note (``visualsearch:rejected:{device}``, cloud_lambda/device_notes.py): it
    is what a refusal is supposed to write, so the web app can say why (tests/cloud_lambda/test_device_notes.py).
    """
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        if key.startswith(b"visualsearch:rejected:"):
            continue
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"list":
            out[key] = tuple(client.lrange(key, 0, -1))
        elif kind == b"zset":
            out[key] = tuple(client.zrange(key, 0, -1, withscores=True))
        else:
            out[key] = kind
    return out
