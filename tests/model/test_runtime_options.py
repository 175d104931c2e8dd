"""Runtime options passed through ``Featurizer``: onnxruntime thread spinning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.featurizer import Featurizer
from model.runtime.base import BackendUnavailable


def _spin_entry(featurizer: Featurizer) -> str:
    session = featurizer._backend._session  # type: ignore[attr-defined]
    return str(session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning"))


@pytest.mark.parametrize("spinning, entry", [(False, "0"), (True, "1")])
def test_spinning_reaches_the_onnxruntime_session(tiny_model: Path, spinning: bool, entry: str) -> None:
    # (auto's trial passes the same options to every candidate: tests/model/test_backend_selection.py)
    featurizer = Featurizer(tiny_model, backend="onnxruntime", threads=1, spinning=spinning)
    assert featurizer.backend_info.backend == "onnxruntime"
    assert _spin_entry(featurizer) == entry


def test_spinning_does_not_change_the_vectors(tiny_model: Path) -> None:
    batch = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    default = Featurizer(tiny_model, backend="onnxruntime", threads=1).featurize(batch)
    quiet = Featurizer(tiny_model, backend="onnxruntime", threads=1, spinning=False).featurize(batch)
    np.testing.assert_array_equal(default, quiet)


def test_backends_without_the_switch_ignore_it(tiny_model: Path) -> None:
    pytest.importorskip("openvino")
    featurizer = Featurizer(tiny_model, backend="openvino", device="CPU", threads=1, spinning=False)
    assert featurizer.backend_info.backend == "openvino"


def test_unknown_backend_is_still_a_clear_error(tiny_model: Path) -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend 'tpu'"):
        Featurizer(tiny_model, backend="tpu", spinning=False)


def test_backend_options_reach_only_the_backends_that_take_them(tiny_model: Path) -> None:
    from model.runtime.base import create_backend

    # spinning is onnxruntime's; OpenVINO must still open when asked for it (auto may pick either).
    ov = create_backend(str(tiny_model), "openvino", spinning=False)
    assert ov.info.backend == "openvino"
    ort = create_backend(str(tiny_model), "onnxruntime", spinning=False)
    assert getattr(ort, "spinning", None) is False
    with pytest.raises(TypeError, match="no backend takes"):
        create_backend(str(tiny_model), "onnxruntime", spining=False)
