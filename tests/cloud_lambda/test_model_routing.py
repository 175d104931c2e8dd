"""Several model ids at once: each message searches the index of its own model id; only an id with no index
is refused; new indexes are picked up and retired ones dropped by a warm service; a memory budget unloads
the least recently used index."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cloud_lambda.catalog.layout import write_catalog
from cloud_lambda.catalog.roots import LocalRoot
from cloud_lambda.metadata.base import ItemRecord
from cloud_lambda.search.service import SearchService
from cloud_lambda.settings import CloudSettings
from model.featurizer import Featurizer
from model.testing import build_tiny_model
from simulator.stack.processes import RedisProcess
from tests.cloud_lambda.conftest import feature_event, smooth_image


@dataclass
class Model:
    featurizer: Featurizer
    prefix: str

    @property
    def model_id(self) -> str:
        return self.featurizer.model_id


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Model]:
    """Three tiny models with other weights (seeds): three model ids, like an old, a new and an unknown export."""
    folder = tmp_path_factory.mktemp("models")
    return {
        name: Model(Featurizer(build_tiny_model(folder / f"{name}.onnx", seed=seed), backend="onnxruntime"), name)
        for name, seed in (("old", 0), ("new", 1), ("unknown", 2))
    }


IMAGES = [smooth_image(seed) for seed in range(12)]


def index_into(root: Path, model: Model) -> Path:
    """The catalog indexed with ``model`` at ``root/<model id>`` (item ids carry the model's name)."""
    ids = [f"{model.prefix}-item-{i:02d}" for i in range(len(IMAGES))]
    records = [
        ItemRecord(id=i, model_id=model.model_id, title=f"{model.prefix} title {n}", image_url=f"/{i}.jpg")
        for n, i in enumerate(ids)
    ]
    return write_catalog(
        Path(LocalRoot(root).location(model.model_id)),
        model_id=model.model_id,
        dim=model.featurizer.dim,
        input_size=model.featurizer.input_size,
        ids=ids,
        vectors=np.stack([model.featurizer.featurize_frame(image) for image in IMAGES]),
        records=records,
        index_kind="exact",
        index_params={},
        summary={},
        report_lines=[],
    )


def service_on(root: Path, redis_server: RedisProcess, **settings: object) -> SearchService:
    return SearchService(
        CloudSettings.build(index_dir=str(root), redis_url=redis_server.url, redis_timeout_s=1.0, **settings)
    )


def test_each_model_id_searches_its_own_index(models: dict[str, Model], tmp_path: Path, redis_server: RedisProcess):
    root = tmp_path / "root"
    index_into(root, models["old"])
    index_into(root, models["new"])
    service = service_on(root, redis_server)
    assert service.catalogs.model_ids() == sorted([models["old"].model_id, models["new"].model_id])
    for seq, (name, device) in enumerate((("old", "cam-old"), ("new", "cam-new")), start=1):
        model = models[name]
        vector = model.featurizer.featurize_frame(IMAGES[5])
        result = service.handle_feature_event(feature_event(vector, model.model_id, device_id=device, seq=seq))
        assert result["status"] == "accepted" and result["top"] == f"{name}-item-05", result
        stored = service.matches.latest(device)[0]
        assert stored["model_id"] == model.model_id
        assert stored["matches"][0]["title"] == f"{name} title 5"  # joined from that index's own metadata
        assert stored["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_unknown_model_id_is_refused_naming_the_ids_there_are(
    models: dict[str, Model], tmp_path: Path, redis_server: RedisProcess
):
    root = tmp_path / "root"
    index_into(root, models["old"])
    index_into(root, models["new"])
    service = service_on(root, redis_server)
    unknown = models["unknown"]
    vector = unknown.featurizer.featurize_frame(IMAGES[5])
    result = service.handle_feature_event(feature_event(vector, unknown.model_id, device_id="cam-x"))
    assert result["status"] == "rejected" and result["reason"] == "no_index_for_model"
    assert unknown.model_id in result["message"]
    assert models["old"].model_id in result["message"] and models["new"].model_id in result["message"]
    assert service.matches.latest("cam-x") == []
    assert service.counters.snapshot()["rejected.no_index_for_model"] == 1


def test_a_warm_service_picks_up_a_new_index_and_drops_a_retired_one(
    models: dict[str, Model], tmp_path: Path, redis_server: RedisProcess
):
    root = tmp_path / "root"
    index_into(root, models["old"])
    service = service_on(root, redis_server, index_relist_s=0)
    new = models["new"]
    event = feature_event(new.featurizer.featurize_frame(IMAGES[2]), new.model_id, device_id="cam-new", seq=1)
    assert service.handle_feature_event(event)["reason"] == "no_index_for_model"
    index_into(root, new)  # `catalog index --root` for the next model, while the search runs
    assert service.handle_feature_event(dict(event, seq=2))["top"] == "new-item-02"
    LocalRoot(root).retire(models["old"].model_id)
    # The next listing (a message for an id not listed yet, here the unknown model's) drops the retired index.
    stray = models["unknown"]
    probe = feature_event(stray.featurizer.featurize_frame(IMAGES[2]), stray.model_id, device_id="cam-x", seq=3)
    assert service.handle_feature_event(probe)["reason"] == "no_index_for_model"
    assert service.catalogs.loaded_ids() == [new.model_id]
    old = models["old"]
    late = feature_event(old.featurizer.featurize_frame(IMAGES[2]), old.model_id, device_id="cam-old", seq=4)
    assert service.handle_feature_event(late)["reason"] == "no_index_for_model"


def test_memory_budget_unloads_the_least_recently_used_index(
    models: dict[str, Model], tmp_path: Path, redis_server: RedisProcess
):
    root = tmp_path / "root"
    index_into(root, models["old"])
    index_into(root, models["new"])
    service = service_on(root, redis_server)
    loaded = service.catalogs.get(service.catalogs.newest())
    service.catalogs.budget_bytes = loaded.bytes + 1  # room for one of the two
    for seq, name in enumerate(("old", "new", "old"), start=1):
        model = models[name]
        event = feature_event(model.featurizer.featurize_frame(IMAGES[seq]), model.model_id, seq=seq)
        assert service.handle_feature_event(event)["top"] == f"{name}-item-{seq:02d}"
        assert service.catalogs.loaded_ids() == [model.model_id]
    assert service.counters.snapshot()["index_evicted"] >= 2


def test_single_folder_layout_is_a_root_of_one(models: dict[str, Model], tmp_path: Path, redis_server: RedisProcess):
    folder = index_into(tmp_path / "root", models["old"])
    single = tmp_path / "single"
    shutil.copytree(folder, single)
    root = LocalRoot(single)
    assert root.single and root.model_ids() == [models["old"].model_id]
    service = service_on(single, redis_server)
    assert service.catalog.model_id == models["old"].model_id


def test_only_complete_model_folders_are_indexes(models: dict[str, Model], tmp_path: Path):
    root = tmp_path / "root"
    folder = index_into(root, models["old"])
    (root / ".retired-x-1234").mkdir()  # hidden: temp and retired folders
    (root / "half-written").mkdir()  # no manifest (yet)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert LocalRoot(root).model_ids() == [manifest["model_id"]]
    with pytest.raises(ValueError, match="cannot name an index folder"):
        LocalRoot(root).location("..")
