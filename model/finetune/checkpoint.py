"""Per-epoch checkpoints: everything a killed run needs to continue exactly where it stopped."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.contracts.errors import VisualSearchError

FORMAT = 1


class CheckpointError(VisualSearchError, ValueError):
    """A checkpoint that cannot be resumed: unreadable, or written with other settings or data."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a run killed mid-write leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    tmp.replace(path)


def load(path: Path) -> dict[str, Any]:
    try:
        # Our own file, holding RNG states (tuples, numpy arrays): not loadable with weights_only.
        payload = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for a damaged file
        raise CheckpointError(f"checkpoint {path} is not readable ({exc}); delete it or pass --restart") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a fine-tuning checkpoint of format {FORMAT}")
    return payload
