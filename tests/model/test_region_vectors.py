"""Region vectors from one inference: the region set, the graph's second output, the export path that records
and stamps them, the featurizer that reads them, and int8 calibrated on the caller's own frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from model.export.api import export_model
from model.export.graph import FeaturizerGraph, pool_regions
from model.featurizer import Featurizer
from model.prepare import prepare_frame
from model.retrieval.pooling import RETRIEVAL_METADATA_KEY
from model.retrieval.query_regions import QueryRegions
from model.retrieval.regions import SINGLE_REGION, Grid, RegionSet, parse_regions, region_boxes
from model.retrieval.settings import regions_of
from model.testing import export_tiny_region_model, register_tiny_conv_backbone

CENTRE = QueryRegions(kind="centre", scales=(0.6,), combine="first")
GRID = RegionSet(whole=False, grids=(Grid(n=2, cell=0.71),))


def test_region_sets_parse_count_and_cover_the_map() -> None:
    assert parse_regions("1") == SINGLE_REGION and SINGLE_REGION.count == 1
    grid = parse_regions("2x0.71")
    assert grid == GRID and grid.count == 4 and grid.describe() == "4 regions (2×2 of 0.71)"
    assert region_boxes(7, 7, grid) == [(0, 5, 0, 5), (0, 5, 2, 7), (2, 7, 0, 5), (2, 7, 2, 7)]
    both = parse_regions("whole,3x0.43")
    assert both.count == 10 and region_boxes(7, 7, both)[0] == (0, 7, 0, 7)
    assert {b[1] - b[0] for b in region_boxes(7, 7, both)[1:]} == {3}
    with pytest.raises(ValueError, match="'2by3'"):
        parse_regions("2by3")
    with pytest.raises(ValueError, match="n"):
        parse_regions("5x0.5")  # at most 4 × 4 windows


def test_the_graph_pools_each_region_of_one_feature_map() -> None:
    name = register_tiny_conv_backbone()
    from model.backbones.base import get_backbone

    backbone = get_backbone(name)
    graph = FeaturizerGraph(backbone.build(), backbone.spec, "avg", regions=GRID).eval()
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    with torch.no_grad():
        embedding, regions = graph(frames)
        fmap = graph.feature_map(frames)
    assert embedding.shape == (2, 32) and regions.shape == (2, 4, 32)
    # Region 1 is the top-right window: the average of that slice of the same map, normalized.
    y0, y1, x0, x1 = region_boxes(int(fmap.shape[2]), int(fmap.shape[3]), GRID)[1]
    want = torch.nn.functional.normalize(fmap[:, :, y0:y1, x0:x1].mean(dim=(2, 3)), dim=1)
    assert torch.allclose(regions[:, 1], want, atol=1e-6)
    assert torch.allclose(pool_regions(fmap, GRID), regions, atol=1e-6)


@pytest.fixture(scope="module")
def region_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # int8 calibrated on "the user's own images": prepared frames of one colour family, not the generic photos.
    rng = np.random.default_rng(5)
    own = np.stack([prepare_frame(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), 64) for _ in range(12)])
    out = tmp_path_factory.mktemp("region-model")
    return export_tiny_region_model(
        out,
        "int8",
        pooling="avg",
        query_regions=CENTRE,
        regions=GRID,
        calibration_frames=own,
        calibration_source="12 views of the test catalog",
    )


def test_export_records_and_stamps_the_regions_and_the_calibration(region_model: Path) -> None:
    featurizer = Featurizer(region_model, backend="onnxruntime", threads=1, choice_cache=False)
    sidecar = featurizer.sidecar
    assert regions_of(sidecar) == GRID == featurizer.regions
    assert sidecar.extra["calibration"] == "12 views of the test catalog"
    model = onnx.load(str(region_model))
    assert [o.name for o in model.graph.output] == ["embedding", "regions"]
    stamped = json.loads({p.key: p.value for p in model.metadata_props}[RETRIEVAL_METADATA_KEY])
    assert stamped["regions"] == GRID.model_dump(mode="json") and stamped["pooling"] == "avg"
    frames = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    regions = featurizer.featurize_regions(frames)
    assert regions.shape == (3, 4, 32)
    np.testing.assert_allclose(np.linalg.norm(regions, axis=2), 1.0, atol=1e-5)
    assert featurizer.featurize(frames).shape == (3, 32)  # the whole-map vector a version-1 reader gets


def test_other_regions_make_another_model_id(region_model: Path, tmp_path: Path) -> None:
    name = register_tiny_conv_backbone()
    other = export_model(name, tmp_path, ("fp32",), pooling="avg", query_regions=CENTRE, progress=False)["fp32"]
    mine = Featurizer(region_model, choice_cache=False).model_id
    assert Featurizer(other, choice_cache=False).model_id != mine


def test_a_single_region_model_answers_featurize_regions_with_its_one_vector(tiny_model: Path) -> None:
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1, choice_cache=False)
    frames = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert featurizer.regions.is_single
    np.testing.assert_array_equal(featurizer.featurize_regions(frames)[:, 0], featurizer.featurize(frames))


def test_calibration_frames_must_be_prepared_frames(tmp_path: Path) -> None:
    name = register_tiny_conv_backbone()
    with pytest.raises(ValueError, match="calibration_frames"):
        export_model(name, tmp_path, ("int8",), progress=False, calibration_frames=np.zeros((12, 32, 32, 3), np.uint8))
