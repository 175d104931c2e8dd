"""Query side on the device: cheap object-region proposals, featurized as a small batch.

Two proposal kinds, both cost far less than one inference:

- ``centre``: a fixed set of centred crops (people hold a product roughly in front of the camera).
- ``saliency``: the spectral-residual saliency map (Hou & Zhang, CVPR 2007) of a 64-px thumbnail, whose
  salient blob gives one square box around the object; plus the full frame as a fallback region.

The region vectors are combined on the device into the one vector the wire carries (``mean``: the
normalized mean; ``first``: the first region only, i.e. a single inference on the proposed crop).
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from model.prepare import Roi, prepare_frame

THUMB = 64


class QueryRegions(BaseModel):
    """Which regions of a device frame are featurized. Recorded in the model sidecar (``query_regions``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["none", "centre", "saliency"] = Field(
        default="none", description="none = the whole frame, as before; centre = centred crops; saliency = box."
    )
    scales: tuple[float, ...] = Field(
        default=(1.0, 0.6), description="centre: crop sides as fractions of the frame's centre square."
    )
    include_full: bool = Field(default=True, description="saliency: also featurize the whole frame.")
    margin: float = Field(default=0.25, ge=0.0, le=1.0, description="saliency: box grown by this fraction per side.")
    combine: Literal["mean", "first"] = Field(
        default="mean", description="mean of the region vectors (renormalized), or the first region only."
    )
    blank_below: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description=(
            "centre, one crop: featurize the whole frame instead when under this fraction of the crop's pixels lie"
            " on an edge (the object is beside the middle: model.retrieval.frame_crop); None: always the crop."
        ),
    )

    @model_serializer(mode="wrap")
    def _without_an_unset_rule(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A model exported before ``blank_below`` existed, and one exported now without it, stamp the same bytes
        # into the ONNX file, so the same settings keep the same model id (and indexes keep serving).
        data: dict[str, Any] = handler(self)
        if self.blank_below is None:
            data.pop("blank_below", None)
        return data

    @field_validator("scales")
    @classmethod
    def _scales_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.2 <= s <= 1.0 for s in value):
            raise ValueError(f"scales must be non-empty, each in [0.2, 1.0], got {value}")
        return value

    @property
    def batch(self) -> int:
        """Inferences per frame."""
        if self.kind == "none":
            return 1
        if self.combine == "first":
            return 1
        if self.kind == "centre":
            return len(self.scales)
        return 2 if self.include_full else 1

    def describe(self) -> str:
        if self.kind == "none":
            return "whole frame"
        if self.kind == "centre":
            regions = f"centre {'/'.join(f'{s:g}' for s in self.scales)}"
            if self.blank_below is not None:
                regions += f" (whole frame when under {self.blank_below:g} edges)"
        else:
            regions = "saliency box" + (" + full" if self.include_full else "")
        return f"{regions}, {self.combine} (batch {self.batch})"


NO_REGIONS = QueryRegions()


def spectral_residual(gray: np.ndarray) -> np.ndarray:
    """Saliency map in [0, 1] of a small float32 gray image (same shape)."""
    spectrum = np.fft.fft2(gray)
    log_amp = np.log(np.abs(spectrum) + 1e-8).astype(np.float32)
    phase = np.angle(spectrum)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    saliency = cv2.GaussianBlur(saliency.astype(np.float32), (0, 0), 2.5)
    peak = float(saliency.max())
    return saliency / peak if peak > 0 else saliency


def saliency_roi(frame: np.ndarray, margin: float = 0.25) -> Roi:
    """A square box (as a fraction of the frame) around the salient mass inside the frame's centre square.

    The box is the centroid of the top-decile saliency ± 1.5 weighted standard deviations, grown by ``margin``; it is
    expressed in frame coordinates so it goes straight to :func:`model.prepare.prepare_frame`.
    """
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frame[top : top + side, left : left + side]
    thumb = cv2.resize(square, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(thumb, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    sal = spectral_residual(gray)
    # Keep only the most salient tenth: textured clutter is salient too, but less peaked than an object.
    weights = np.clip(sal - float(np.quantile(sal, 0.9)), 0.0, None)
    total = float(weights.sum())
    if total <= 0:
        return Roi()
    ys, xs = np.mgrid[0:THUMB, 0:THUMB].astype(np.float32) + 0.5
    cy, cx = float((weights * ys).sum() / total), float((weights * xs).sum() / total)
    sy = float(np.sqrt((weights * (ys - cy) ** 2).sum() / total))
    sx = float(np.sqrt((weights * (xs - cx) ** 2).sum() / total))
    half = 1.5 * max(sx, sy) * (1.0 + margin)
    half = float(np.clip(half, 0.25 * THUMB, 0.45 * THUMB))
    x0 = float(np.clip(cx - half, 0.0, THUMB - 2 * half))
    y0 = float(np.clip(cy - half, 0.0, THUMB - 2 * half))
    scale = side / THUMB
    return Roi(
        x=min(1.0, (left + x0 * scale) / width),
        y=min(1.0, (top + y0 * scale) / height),
        w=min(2 * half * scale / width, 1.0 - (left + x0 * scale) / width),
        h=min(2 * half * scale / height, 1.0 - (top + y0 * scale) / height),
    )


def propose(frame: np.ndarray, regions: QueryRegions) -> list[Roi]:
    """The ROIs to featurize for ``frame`` (the first is the one used when ``combine == 'first'``)."""
    if regions.kind == "none":
        return [Roi()]
    if regions.kind == "centre":
        height, width = frame.shape[:2]
        side = min(height, width)
        rois = []
        for scale in regions.scales:
            fw, fh = scale * side / width, scale * side / height
            rois.append(Roi(x=(1.0 - fw) / 2, y=(1.0 - fh) / 2, w=fw, h=fh))
        return rois
    rois = [saliency_roi(frame, regions.margin)]
    if regions.include_full:
        rois.append(Roi())
    return rois


def prepare_regions(frame: np.ndarray, size: int, regions: QueryRegions) -> np.ndarray:
    """``[R, size, size, 3]`` uint8: the batch the featurizer runs for one frame (R = ``regions.batch``)."""
    rois = propose(frame, regions)[: regions.batch]
    return np.stack([prepare_frame(frame, size, roi) for roi in rois])


def combine(vectors: np.ndarray, regions: QueryRegions) -> np.ndarray:
    """``[R, D]`` region vectors → the one L2-normalized ``[D]`` vector sent on the wire."""
    if vectors.ndim != 2 or vectors.shape[0] < 1:
        raise ValueError(f"need [R, D] region vectors, got shape {list(vectors.shape)}")
    if regions.combine == "first" or vectors.shape[0] == 1:
        return vectors[0].astype(np.float32)
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else vectors[0]).astype(np.float32)
