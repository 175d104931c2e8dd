"""``Featurizer``: a model file + its sidecar on the best backend present, with input checks."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from model.contracts.errors import VisualSearchError
from model.logs import log_event
from model.prepare import Roi, prepare_frame
from model.retrieval.regions import REGIONS_OUTPUT, RegionSet
from model.retrieval.settings import regions_of
from model.runtime.base import BackendInfo, InferenceBackend
from model.runtime.choice_cache import ChoiceCache
from model.runtime.selection import BackendChoice, select_backend
from model.runtime.trial import TrialSettings
from model.sidecar import Sidecar, SidecarError, read_sidecar

log = logging.getLogger(__name__)


class FeaturizerError(VisualSearchError, ValueError):
    """Wrong input (shape, dtype) or a model that does not honour its contract."""


class Featurizer:
    """Loads ``model_path`` (checked against its sidecar) and turns prepared frames into vectors.

    ``backend``: ``auto`` | ``onnxruntime`` | ``openvino``; ``device``: ``auto`` or a backend-specific device
    (``cpu``, ``cuda``, ``tensorrt`` for onnxruntime; ``CPU``, ``GPU``, ``NPU`` for OpenVINO). ``auto`` times
    every candidate present on this model and keeps the fastest (:mod:`model.runtime.selection`), cached in
    ``choice_cache`` (a path; default: :func:`model.runtime.choice_cache.default_cache_path`; ``False``: none);
    :attr:`backend_choice` says what was chosen and why.
    ``spinning``: ``False`` stops idle inference threads from busy-waiting (onnxruntime's
    ``session.intra_op.allow_spinning``) when other work shares the cores; ``None`` keeps the runtime's default.
    Backends without such a switch (OpenVINO) ignore it.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        backend: str = "auto",
        device: str = "auto",
        threads: int | None = None,
        warmup: int = 2,
        spinning: bool | None = None,
        choice_cache: str | os.PathLike[str] | Literal[False] | None = None,
        trial: TrialSettings | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.exists():
            raise FileNotFoundError(f"model file {path} does not exist (run `visual-search model export`)")
        self.model_path = str(path)
        self.sidecar: Sidecar = read_sidecar(path)
        self._regions = regions_of(self.sidecar)
        self.spinning = spinning
        selected = select_backend(
            self.model_path,
            backend,
            device,
            threads,
            model_id=self.sidecar.model_id,
            input_size=self.sidecar.input_size,
            cache=False if choice_cache is False else ChoiceCache(choice_cache),
            trial=trial,
            spinning=spinning,
        )
        self._backend: InferenceBackend = selected.backend
        self.backend_choice: BackendChoice = selected.choice
        self._check_contract()
        for _ in range(max(0, warmup)):
            self.featurize(np.zeros((1, self.input_size, self.input_size, 3), dtype=np.uint8))
        log_event(
            log,
            "featurizer_loaded",
            model_id=self.model_id,
            backend=self.backend_info.describe(),
            why=self.backend_choice.reason,
        )

    # --- what callers read -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.sidecar.model_id

    @property
    def dim(self) -> int:
        return self.sidecar.dim

    @property
    def input_size(self) -> int:
        return self.sidecar.input_size

    @property
    def backend_info(self) -> BackendInfo:
        return self._backend.info

    # --- inference ---------------------------------------------------------------------------------
    def featurize(self, batch: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` BGR (from :func:`model.prepare.prepare_frame`) → float32 ``[N, D]``."""
        batch = self._checked(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._backend.run(np.ascontiguousarray(batch))
        if out.shape != (batch.shape[0], self.dim):
            raise FeaturizerError(f"model returned shape {list(out.shape)}, sidecar says dim {self.dim}")
        return out

    def _checked(self, batch: np.ndarray) -> np.ndarray:
        if not isinstance(batch, np.ndarray):
            raise FeaturizerError(f"input must be a numpy array, got {type(batch).__name__}")
        if batch.ndim == 3:
            batch = batch[None]
        s = self.input_size
        if batch.dtype != np.uint8:
            raise FeaturizerError(f"input dtype must be uint8 (BGR pixels), got {batch.dtype}")
        if batch.ndim != 4 or batch.shape[1:] != (s, s, 3):
            raise FeaturizerError(
                f"input shape must be [N, {s}, {s}, 3] for {self.model_id}, got {list(batch.shape)};"
                " use model.prepare.prepare_frame()"
            )
        return batch

    @property
    def regions(self) -> RegionSet:
        """The region vectors the model computes per frame (sidecar ``extra.retrieval.regions``)."""
        return self._regions

    def featurize_regions(self, batch: np.ndarray) -> np.ndarray:
        """uint8 ``[N, S, S, 3]`` → float32 ``[N, R, D]`` region vectors (R = 1: the embedding as one region)."""
        if self._regions.is_single:
            return self.featurize(batch)[:, None, :]
        batch = self._checked(batch)
        if batch.shape[0] == 0:
            return np.zeros((0, self._regions.count, self.dim), dtype=np.float32)
        out = self._backend.run(np.ascontiguousarray(batch), REGIONS_OUTPUT)
        if out.shape != (batch.shape[0], self._regions.count, self.dim):
            raise FeaturizerError(
                f"model returned regions {list(out.shape)}, sidecar says {self._regions.count} × {self.dim}"
            )
        return out

    def featurize_frame(self, frame: np.ndarray, roi: Roi | None = None) -> np.ndarray:
        """A raw BGR frame of any size → float32 ``[D]``."""
        return self.featurize(prepare_frame(frame, self.input_size, roi)[None])[0]

    def _check_contract(self) -> None:
        out = self._backend.run(np.zeros((1, self.input_size, self.input_size, 3), dtype=np.uint8))
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise SidecarError(f"model {self.model_path} outputs {list(out.shape)} but its sidecar says dim {self.dim}")
