"""The JSON sidecar written beside every exported model and checked by every loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.contracts.errors import VisualSearchError
from model.contracts.model_file import sidecar_path_for


class SidecarError(VisualSearchError, ValueError):
    """A sidecar is missing, unreadable, or does not describe the model beside it."""


class Normalization(BaseModel):
    """What the graph does to the uint8 BGR input before the backbone (recorded, not re-applied)."""

    model_config = ConfigDict(extra="forbid")

    color_order: Literal["RGB", "BGR"] = Field(
        description="Channel order the backbone expects after the graph's conversion."
    )
    mean: list[float] = Field(description="Per-channel mean subtracted (0..255 scale), in color_order.")
    std: list[float] = Field(description="Per-channel divisor (0..255 scale), in color_order.")


class Parity(BaseModel):
    """Agreement figures measured at export on real photos."""

    model_config = ConfigDict(extra="allow")

    reference: str = Field(description="What this variant was compared against (torch, fp32).")
    images: int = Field(description="How many photos/views the figures were measured on.")
    cosine_min: float = Field(description="Smallest per-image cosine similarity to the reference.")
    cosine_mean: float = Field(description="Mean per-image cosine similarity to the reference.")
    nn_agreement: float | None = Field(
        default=None, description="Share of queries whose nearest neighbour is the same as the reference's."
    )


class Sidecar(BaseModel):
    """Everything a loader needs to trust a model file. Stored as ``<name>.json`` beside ``<name>.onnx``."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    format_version: int = Field(default=1, description="Version of this sidecar schema.")
    model_id: str = Field(description="backbone-variant-hash8; every vector carries it and stores refuse mixing.")
    backbone: str = Field(description="Registry name of the backbone, e.g. efficientnet-lite0.")
    variant: Literal["fp32", "int8", "fp16"] = Field(description="Numeric format of the weights.")
    dim: int = Field(gt=0, description="Embedding dimension D.")
    input_size: int = Field(gt=0, description="Square input side S in pixels.")
    input_name: str = Field(default="image")
    output_name: str = Field(default="embedding")
    input_layout: str = Field(default="NHWC uint8 BGR")
    opset: int = Field(description="ONNX opset of the graph.")
    normalization: Normalization
    pooling: str = Field(default="avg", description="Global pooling at the cut (avg, gem, ...).")
    weights_source: str = Field(description="Where the weights came from (package, file, checkpoint).")
    weights_license: str = Field(description="Licence of the weights.")
    sha256: str = Field(description="SHA-256 of the .onnx file this sidecar describes.")
    parity: list[Parity] = Field(default_factory=list)
    exported_at: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="Free-form facts (calibration set, tool versions).")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_model_id(backbone: str, variant: str, sha256: str) -> str:
    """``efficientnet-lite0-int8-3f2a9c1d``: readable, and distinct whenever the bytes differ."""
    return f"{backbone}-{variant}-{sha256[:8]}"


def write_sidecar(model_path: str | Path, sidecar: Sidecar) -> Path:
    path = Path(sidecar_path_for(str(model_path)))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sidecar.model_dump(mode="json"), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def read_sidecar(model_path: str | Path, verify_hash: bool = True) -> Sidecar:
    """Load and check the sidecar of ``model_path``; raise :class:`SidecarError` saying what is wrong."""
    path = Path(sidecar_path_for(str(model_path)))
    if not path.exists():
        raise SidecarError(
            f"no sidecar {path} beside model {model_path}: export writes one; do not copy the .onnx alone"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SidecarError(f"sidecar {path} is not readable JSON: {exc}") from exc
    try:
        sidecar = Sidecar.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise SidecarError(f"sidecar {path}: key '{key}': {first['msg']}") from exc
    if verify_hash and Path(model_path).exists():
        actual = file_sha256(model_path)
        if actual != sidecar.sha256:
            raise SidecarError(
                f"model {model_path} does not match its sidecar (sha256 {actual[:12]}… vs {sidecar.sha256[:12]}…):"
                " the file was changed or the sidecar belongs to another export"
            )
    return sidecar
