"""Shared fixtures: real mosquitto and redis-server on free loopback ports, and small models.

Each domain's own fixtures live in ``tests/<domain>/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model.testing import build_tiny_model
from simulator.stack.processes import MosquittoProcess, RedisProcess

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"


@pytest.fixture(autouse=True, scope="session")
def _backend_choice_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """auto's measured-backend cache goes to a session folder, never to the user's ~/.cache."""
    from model.runtime.choice_cache import CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("backend-choice") / "backend-choice.json"))
        yield


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(workdir=tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoProcess]:
    broker = MosquittoProcess(workdir=tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A contract-compliant 64-d ONNX featurizer (32 px) that loads in milliseconds."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "tiny.onnx")


MODEL_CACHE = REPO_ROOT / ".cache" / "models"


@pytest.fixture(scope="session")
def exported_models() -> dict[str, Path]:
    """The real EfficientNet-Lite0 featurizer: variant → .onnx path for fp32, int8 and fp16.

    Exported once into ``.cache/models`` (git-ignored) and reused by later runs while the files and sidecars
    are valid; a file lock makes parallel test processes wait for one export instead of racing.
    """
    from model.export.api import ensure_exported

    return ensure_exported(MODEL_CACHE, ("fp32", "int8", "fp16"))
