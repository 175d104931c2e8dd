"""Typed settings of the local stack: where its state lives, which ports, which catalog.

One pydantic model, validated before anything starts, so a bad port or a missing catalog stops
``stack up`` with the key and the reason instead of a half-started stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

DEFAULT_STATE_DIR = Path(".state/stack")


class StackConfig(BaseModel):
    """Everything ``visual-search stack up`` needs. Ports set to 0 are picked free at start-up."""

    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Field(
        default=DEFAULT_STATE_DIR, description="Folder for stack.json, logs and the data of each service."
    )
    host: str = Field(default="127.0.0.1", description="Interface every service listens on (loopback by default).")
    mqtt_port: int = Field(default=1883, ge=0, le=65535, description="mosquitto listener port (0: pick a free one).")
    redis_port: int = Field(default=6379, ge=0, le=65535, description="redis-server port (0: pick a free one).")
    http_port: int = Field(default=8080, ge=0, le=65535, description="API + web app port (0: pick a free one).")
    index_dir: Path = Field(
        description="Catalog index folder written by `visual-search catalog index`, or an index root holding one"
        " per model id (`catalog index --root`): cameras on any of those models get matches."
    )
    catalog_dir: Path | None = Field(
        default=None, description="Folder of catalog images, served under /catalog/ so the web app can show them."
    )
    metadata: str | None = Field(
        default=None, description="Metadata store URL (VS_METADATA); default: the index folder's metadata.sqlite."
    )
    photo_model: Path | None = Field(
        default=None, description="ONNX model for 'search by photo' (VS_PHOTO_MODEL); must match the index's model."
    )
    top_k: int = Field(default=5, ge=1, le=100, description="Matches kept per frame (VS_TOP_K).")
    min_score: float | None = Field(
        default=None, ge=-1.0, le=1.0, description="Cosine score below which a hit is not a match (VS_MIN_SCORE)."
    )
    min_score_adapted: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="The same for an adapted index, whose head changes the scale of the scores (VS_MIN_SCORE_ADAPTED).",
    )
    index_reload_s: float | None = Field(
        default=None,
        ge=0,
        description="How often the search checks the index for a newer version, e.g. after `catalog adapt`"
        " (VS_INDEX_RELOAD_S).",
    )
    match_list_cap: int = Field(default=100, ge=1, description="Match records kept per device (VS_MATCH_LIST_CAP).")
    ready_timeout_s: float = Field(default=30.0, gt=0, description="How long each service may take to become ready.")

    @field_validator("index_dir")
    @classmethod
    def _index_exists(cls, value: Path) -> Path:
        from cloud_lambda.catalog.roots import LocalRoot

        if not LocalRoot(value).model_ids():
            raise ValueError(
                f"{value} holds no catalog index (no manifest.json, no <model id>/manifest.json):"
                " run `visual-search catalog index` or `make demo`"
            )
        return value.resolve()

    @field_validator("catalog_dir", "photo_model")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.exists():
            raise ValueError(f"{value} does not exist")
        return value.resolve() if value is not None else None

    @field_validator("photo_model")
    @classmethod
    def _photo_model_matches_index(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Refused here, not at the first photo search: a stack whose photo search can only answer 503 is
        # not "up", and the user who passed --photo-model should hear about it from the command they ran.
        index_dir = info.data.get("index_dir")
        if value is None or index_dir is None:
            return value
        from cloud_lambda.catalog.roots import LocalRoot
        from model.retrieval.settings import SettingsMismatch, check_compatible
        from model.sidecar import SidecarError, read_sidecar

        root = LocalRoot(index_dir)
        try:
            sidecar = read_sidecar(value)
            # In a root of several model ids the photo model picks its own index; a single index must be its.
            folder = root.path if root.single else root.path / sidecar.model_id
            if not (folder / "manifest.json").is_file():
                raise SettingsMismatch(f"no index for model {sidecar.model_id}; it has {', '.join(root.model_ids())}")
            manifest = json.loads((folder / "manifest.json").read_text())
            check_compatible(sidecar, manifest["model_id"], manifest.get("retrieval"))
        except (SidecarError, SettingsMismatch) as exc:
            raise ValueError(f"{value} cannot search the index in {index_dir}: {exc}") from None
        return value

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.resolve()

    def recorded_settings(self) -> dict[str, Any]:
        """What the running stack is compared on by a second ``up`` (JSON types; ports as asked, 0 = any)."""
        return self.model_dump(mode="json", exclude={"state_dir", "ready_timeout_s"})

    def cloud_env(self, mqtt_port: int, redis_port: int) -> dict[str, str]:
        """The ``VS_*`` variables the search and API handlers read (CloudSettings), as the Lambdas get them."""
        env = {
            "VS_INDEX_DIR": str(self.index_dir),
            "VS_REDIS_URL": f"redis://{self.host}:{redis_port}/0",
            "VS_TOP_K": str(self.top_k),
            "VS_MATCH_LIST_CAP": str(self.match_list_cap),
            "VS_MATCH_PUBLISH": f"mqtt://{self.host}:{mqtt_port}",
        }
        if self.metadata:
            env["VS_METADATA"] = self.metadata
        if self.min_score is not None:
            env["VS_MIN_SCORE"] = str(self.min_score)
        if self.min_score_adapted is not None:
            env["VS_MIN_SCORE_ADAPTED"] = str(self.min_score_adapted)
        if self.index_reload_s is not None:
            env["VS_INDEX_RELOAD_S"] = str(self.index_reload_s)
        if self.photo_model is not None:
            env["VS_PHOTO_MODEL"] = str(self.photo_model)
        return env
