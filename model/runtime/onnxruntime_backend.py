"""onnxruntime: execution providers tried in order TensorRT → CUDA → OpenVINO → CPU."""

from __future__ import annotations

import logging
import os

import numpy as np

from model.contracts.model_file import INPUT_NAME, OUTPUT_NAME
from model.logs import log_event
from model.runtime.base import BackendInfo, BackendUnavailable, InferenceBackend, register

log = logging.getLogger(__name__)

PROVIDER_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
_CANDIDATES = (
    ("tensorrt", "TensorrtExecutionProvider"),
    ("cuda", "CUDAExecutionProvider"),
    ("openvino", "OpenVINOExecutionProvider"),
    ("cpu", "CPUExecutionProvider"),
)
DEVICE_TO_PROVIDER = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def _provider_options(provider: str, model_path: str) -> dict[str, str]:
    if provider == "TensorrtExecutionProvider":
        # Engine builds take minutes: cache them beside the model so a restart is fast.
        cache = os.path.join(os.path.dirname(os.path.abspath(model_path)), ".trt-cache")
        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": cache, "trt_fp16_enable": "True"}
    return {}


@register
class OnnxRuntimeBackend(InferenceBackend):
    name = "onnxruntime"
    priority = 10
    options = frozenset({"spinning"})
    module = "onnxruntime"

    @classmethod
    def candidate_devices(cls) -> list[str]:
        """One device per execution provider this build has; a provider listed without its libraries (CUDA
        in ``onnxruntime-gpu`` on a machine without a driver) is caught when the trial opens it."""
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        return [device for device, provider in _CANDIDATES if provider in available]

    @classmethod
    def fingerprint(cls) -> dict[str, str]:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "onnxruntime.providers": ",".join(ort.get_available_providers())}

    def __init__(
        self, model_path: str, device: str = "auto", threads: int | None = None, spinning: bool | None = None
    ) -> None:
        """``spinning``: whether idle intra-op threads busy-wait for the next run (onnxruntime's default, True).
        False when other work shares the cores (a frame grabber decoding video, catalog decode workers): a
        spinning thread burns the time slice the other work needs and the OS then preempts inference."""
        import onnxruntime as ort

        available = ort.get_available_providers()
        if device == "auto":
            wanted = [p for p in PROVIDER_ORDER if p in available]
        else:
            provider = DEVICE_TO_PROVIDER.get(device.lower())
            if provider is None:
                raise BackendUnavailable(
                    f"onnxruntime device '{device}' unknown; use one of {sorted(DEVICE_TO_PROVIDER)}"
                )
            if provider not in available:
                raise BackendUnavailable(f"onnxruntime has no {provider} here (available: {', '.join(available)})")
            wanted = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        self.spinning = True if spinning is None else spinning
        try:
            self._session = ort.InferenceSession(
                model_path,
                sess_options=options,
                providers=[(p, _provider_options(p, model_path)) for p in wanted],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
            raise BackendUnavailable(f"onnxruntime could not load {model_path}: {exc}") from exc
        in_use = tuple(self._session.get_providers())
        # onnxruntime silently drops a provider whose libraries are missing; say so instead.
        if wanted and in_use and in_use[0] != wanted[0]:
            self.fallback = f"onnxruntime fell back from {wanted[0]} to {in_use[0]}"
            log_event(log, "onnxruntime_fell_back", logging.WARNING, wanted=wanted[0], running=in_use[0])
        device_name = {
            "TensorrtExecutionProvider": "GPU (TensorRT)",
            "CUDAExecutionProvider": "GPU (CUDA)",
            "OpenVINOExecutionProvider": "OpenVINO",
        }.get(in_use[0], "CPU")
        self._info = BackendInfo(backend=self.name, device=device_name, providers=in_use, threads=threads)

    @property
    def info(self) -> BackendInfo:
        return self._info

    def run(self, batch: np.ndarray, output: str = OUTPUT_NAME) -> np.ndarray:
        (out,) = self._session.run([output], {INPUT_NAME: batch})
        return np.asarray(out, dtype=np.float32)
