"""Cloud settings: one pydantic model, read from ``VS_*`` environment variables (Lambda configuration).

Bad configuration stops start-up with :class:`SettingsError` naming the variable and why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from model.contracts.errors import VisualSearchError

ENV_PREFIX = "VS_"
LAMBDA_INDEX_SHARE = 0.7
"""Share of a Lambda's memory the indexes may use by default; the rest is the runtime (docs/scale.md: RSS)."""
PUBLISH_RE = re.compile(r"^(none|iot-data|mqtt://[^/:]+:\d{1,5})$")
METADATA_RE = re.compile(r"^(|sqlite:///.+|dynamodb://[A-Za-z0-9_.-]{3,255})$")


class SettingsError(VisualSearchError, ValueError):
    """A ``VS_*`` variable is missing or invalid; the message names it."""


class CloudSettings(BaseModel):
    """Configuration of the search and API Lambdas (and the local rule bridge / HTTP server)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_dir: str = Field(
        description="Catalog index folder written by `visual-search catalog index` (local path or s3://bucket/prefix)."
    )
    # SecretStr: the URL may carry the AUTH token (redis://:token@host), and settings end up in reprs and logs.
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis (ElastiCache) URL for match lists; may hold the AUTH token. Never printed.",
    )
    metadata: str = Field(
        default="",
        description="Metadata store: sqlite:///path, dynamodb://table, or empty for the index's metadata.sqlite.",
    )
    top_k: int = Field(default=5, ge=1, le=100, description="Matches kept per message.")
    min_score: float = Field(default=0.0, ge=-1.0, le=1.0, description="Cosine similarity a match must reach.")
    min_score_adapted: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity a match must reach in an adapted index (`catalog adapt`: its projection head"
        " changes the scale of the scores). Default: min_score.",
    )
    match_list_cap: int = Field(default=100, ge=1, le=100_000, description="Records kept per device (LTRIM).")
    match_publish: str = Field(
        default="none", description="Where match records are published: iot-data | mqtt://host:port | none."
    )
    photo_model: str | None = Field(
        default=None, description="ONNX featurizer for photo search (same model id); local path or s3://bucket/key."
    )
    mqtt_username: str | None = Field(
        default=None,
        description="Username for an mqtt:// match publisher (and the local rule bridge), if it needs one.",
    )
    mqtt_password: SecretStr | None = Field(default=None, description="Its password. Never printed.")
    iot_endpoint: str | None = Field(
        default=None, description="IoT data-ATS endpoint host for iot-data publishing (describe-endpoint)."
    )
    seen_ttl_s: int = Field(default=86_400, ge=1, description="How long a (device, seq) idempotency marker lives.")
    device_ttl_s: int = Field(
        default=7 * 86_400,
        ge=60,
        description="A device's status, match list and registry entry expire this long after it was last heard from.",
    )
    max_devices: int = Field(
        default=100_000, ge=1, le=10_000_000, description="Devices kept in the registry (the most recently seen)."
    )
    redis_timeout_s: float = Field(default=2.0, gt=0, le=60, description="Redis socket timeout.")
    hnsw_ef_search: int | None = Field(default=None, ge=1, le=4096, description="Override the index's efSearch.")
    index_memory_mb: int | None = Field(
        default=None,
        ge=64,
        description="Memory the loaded indexes may take together; past it the least recently used are unloaded."
        f" Default: {LAMBDA_INDEX_SHARE:.0%} of the function's memory in Lambda (AWS_LAMBDA_FUNCTION_MEMORY_SIZE),"
        " no limit elsewhere.",
    )
    index_relist_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="A message for a model id with no loaded index lists the index root again at most this often"
        " (picks up an index added for a new model; drops retired ones).",
    )
    index_reload_s: float = Field(
        default=10.0,
        ge=0,
        le=86_400,
        description="A loaded index's manifest is checked this often (on the next message) and the index loaded"
        " again when it changed (`catalog adapt` or a re-index in place); local index folders only.",
    )
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, ge=1, description="Photo search upload limit.")
    cors_origin: str = Field(default="*", description="Access-Control-Allow-Origin for the HTTP API.")

    @field_validator("match_publish")
    @classmethod
    def _publish(cls, value: str) -> str:
        if not PUBLISH_RE.match(value):
            raise ValueError("must be 'none', 'iot-data' or 'mqtt://host:port'")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: str) -> str:
        if not METADATA_RE.match(value):
            raise ValueError("must be sqlite:///path, dynamodb://table or empty")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("index_dir")
    @classmethod
    def _index_dir(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    def index_budget_bytes(self, env: Mapping[str, str] | None = None) -> int | None:
        if self.index_memory_mb is not None:
            return self.index_memory_mb * 2**20
        lambda_mb = (os.environ if env is None else env).get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        return int(int(lambda_mb) * LAMBDA_INDEX_SHARE * 2**20) if lambda_mb.isdigit() else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> CloudSettings:
        """Read ``VS_<FIELD>`` variables (``VS_INDEX_DIR``, ``VS_TOP_K``, ...); ``overrides`` win."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if key in source and source[key] != "":
                values[name] = source[key]
        values.update(overrides)
        return cls.build(**values)

    @classmethod
    def build(cls, **values: Any) -> CloudSettings:
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"])
                problems.append(f"{ENV_PREFIX}{field.upper()} ({field}): {err['msg']}")
        # Outside the except block and without the pydantic error: its text repeats each input value, which
        # for redis_url may hold the AUTH token. The message above names every key and why already.
        raise SettingsError("invalid cloud settings: " + "; ".join(problems))
