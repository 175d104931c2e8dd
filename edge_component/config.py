"""The component's one typed configuration (pydantic), and the three ways to fill it.

Sources, in order of precedence: CLI ``--set key=value`` flags > YAML file > Greengrass component
configuration (IPC ``GetConfiguration``) > defaults. A bad value stops start-up with :class:`ConfigError`
naming the dotted key and the reason. Only the "live" settings (rate, change threshold, heartbeat, ROI)
may change while running (:class:`LiveSettings`); everything else needs a restart.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.contracts.errors import VisualSearchError
from model.contracts.thing_name import check_thing_name
from model.plugins import unknown_kind

DEFAULT_DEVICE_ID = "edge-device"


class ConfigError(VisualSearchError, ValueError):
    """A configuration value is missing or wrong; the message names the key."""


class _Model(BaseModel):
    # extra="forbid": a misspelt key must stop start-up, not be silently ignored.
    # allow_inf_nan=False: "gt=0" lets .inf through, and an infinite timeout turns the watchdog off.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


def _registered_kind(value: str, registered: list[str], package: str) -> str:
    if value not in registered:
        raise ValueError(unknown_kind(value, package, registered))
    return value


class RoiConfig(_Model):
    """Region of interest, as fractions of the frame; the centre square of it is featurized."""

    x: float = Field(default=0.0, ge=0.0, le=1.0, description="Left edge (fraction of width).")
    y: float = Field(default=0.0, ge=0.0, le=1.0, description="Top edge (fraction of height).")
    w: float = Field(default=1.0, gt=0.0, le=1.0, description="Width (fraction of width).")
    h: float = Field(default=1.0, gt=0.0, le=1.0, description="Height (fraction of height).")

    @model_validator(mode="after")
    def _inside(self) -> RoiConfig:
        if self.x + self.w > 1.0 + 1e-9 or self.y + self.h > 1.0 + 1e-9:
            raise ValueError("ROI must lie inside the frame (x + w <= 1 and y + h <= 1)")
        return self


class SourceConfig(_Model):
    """Where frames come from."""

    kind: str = Field(
        default="camera",
        description="A registered source (one file each in edge_component/sources/): camera: USB/V4L2 index; "
        "stream: RTSP/HTTP URL; video: a file; folder: images; deeplens: awscam.",
    )
    camera_index: int = Field(default=0, ge=0, description="V4L2 device index for kind=camera (/dev/videoN).")
    url: str | None = Field(default=None, description="rtsp://, http(s):// or a file path, for kind=stream.")
    path: str | None = Field(default=None, description="Video file (kind=video) or image folder (kind=folder).")
    loop: bool = Field(default=False, description="Restart a video file or folder at its end instead of stopping.")
    realtime: bool = Field(
        default=True,
        description="video/folder: play at the file's own frame rate (a live source: the newest frame wins). "
        "False: as fast as the loop takes frames, none skipped.",
    )
    fps: float | None = Field(default=None, gt=0, description="Frame rate for a folder, or to override a file's.")
    width: int | None = Field(default=None, gt=0, description="Requested capture width (camera).")
    height: int | None = Field(default=None, gt=0, description="Requested capture height (camera).")
    prepare: Literal["grabber", "loop"] = Field(
        default="grabber",
        description="Where frames are cropped and resized to the model input: in the grabber thread (overlaps "
        "inference; the inference thread only featurizes) or in the inference loop.",
    )
    stall_timeout_s: float = Field(default=5.0, gt=0, description="No frame for this long: the watchdog reopens.")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reopen delay; doubles up to the max.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest delay between reopen attempts.")

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        from edge_component.sources.base import source_kinds  # the sources import this module

        return _registered_kind(value, source_kinds(), "edge_component.sources")

    @model_validator(mode="after")
    def _needs(self) -> SourceConfig:
        if self.kind == "stream" and not self.url:
            raise ValueError("source.url is required when source.kind is 'stream'")
        if self.kind in ("video", "folder") and not self.path:
            raise ValueError(f"source.path is required when source.kind is '{self.kind}'")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("source.reconnect_max_s must be >= source.reconnect_min_s")
        return self


class ModelConfig(_Model):
    """The featurizer model file and where it runs."""

    path: str = Field(
        default="artifacts/models/efficientnet-lite0-int8.onnx",
        description="ONNX file (from `visual-search model export`); its sidecar sits beside it.",
    )
    backend: Literal["auto", "onnxruntime", "openvino"] = Field(default="auto", description="Inference runtime.")
    device: str = Field(default="auto", description="auto, or cpu/cuda/tensorrt (onnxruntime), CPU/GPU/NPU (OpenVINO).")
    threads: int | None = Field(default=None, gt=0, description="Inference threads (default: the runtime's choice).")
    backend_cache: str | None = Field(
        default=None,
        description="File where backend 'auto' keeps the backend it measured fastest for this model and machine "
        "(measured again when the CPU, runtime versions, providers or threads change). Default: "
        "backend-choice.json in the component's work folder on Greengrass, else ~/.cache/edge-visual-search/.",
    )
    spinning: bool = Field(
        default=False,
        description="Let idle onnxruntime threads busy-wait for the next frame. Off by default: the grabber "
        "decodes and prepares frames on the same cores, and a spinning thread takes its time slice.",
    )

    def featurizer_options(self) -> dict[str, Any]:
        """Every :class:`model.featurizer.Featurizer` keyword this section sets, in one place so no runner
        forgets one (the laptop run once left out ``spinning``)."""
        return {
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "spinning": self.spinning,
            "choice_cache": self.backend_cache,
        }


class LiveSettings(_Model):
    """Settings that change without a restart (Greengrass configuration updates)."""

    max_rate_hz: float = Field(default=2.0, ge=0, description="Most feature messages per second; 0 = unlimited.")
    change_threshold: float | None = Field(
        default=0.97,
        ge=-1.0,
        le=1.0,
        description="Skip a frame whose cosine to the last published vector is above this; null = send every frame.",
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0, description="Send a vector at least this often even when nothing changed."
    )
    roi: RoiConfig | None = Field(default=None, description="Region of interest; null = whole frame.")


class MqttConfig(_Model):
    """MQTT to AWS IoT Core (mutual TLS on 8883, client id = thing name) or any broker."""

    host: str = Field(default="127.0.0.1", description="Broker host, e.g. xxxx-ats.iot.<region>.amazonaws.com.")
    port: int = Field(default=1883, gt=0, lt=65536, description="1883 plain, 8883 TLS.")
    client_id: str | None = Field(default=None, description="MQTT client id; default: device_id (the thing name).")
    ca_file: str | None = Field(default=None, description="CA bundle; setting it turns TLS on.")
    cert_file: str | None = Field(default=None, description="Device certificate (mutual TLS).")
    key_file: str | None = Field(default=None, description="Device private key (mutual TLS).")
    username: str | None = Field(
        default=None, description="Username, for a broker that wants one (a `stack up` on a LAN address: 'device')."
    )
    password_file: str | None = Field(
        default=None, description="File holding that user's password (a file, so it is never in the config itself)."
    )
    keepalive_s: int = Field(default=30, ge=5, le=1200, description="MQTT keepalive.")
    max_inflight: int = Field(default=10, ge=1, le=100, description="QoS 1 publishes awaiting PUBACK at once.")
    reconnect_min_s: float = Field(default=0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")

    @model_validator(mode="after")
    def _pair(self) -> MqttConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("mqtt.cert_file and mqtt.key_file must be given together")
        if self.password_file is not None and self.username is None:
            raise ValueError("mqtt.password_file needs mqtt.username")
        for name in ("ca_file", "cert_file", "key_file", "password_file"):
            value = getattr(self, name)
            if value is not None and not Path(value).is_file():
                raise ValueError(f"mqtt.{name} {value!r} is not a readable file")
        return self


class PublishConfig(_Model):
    """Where messages go and how they wait while the link is down."""

    kind: str = Field(
        default="mqtt",
        description="A registered publisher (one file each in edge_component/publishers/): greengrass: v2 IPC "
        "PublishToIoTCore; mqtt: paho; stdout/file: debugging; greengrass_v1.",
    )
    qos: Literal[0, 1] = Field(default=1, description="MQTT QoS of feature messages.")
    dtype: Literal["float16", "float32"] = Field(default="float16", description="Vector encoding on the wire.")
    wire_version: Literal[1, 2] = Field(
        default=2,
        description="2: every region vector of a region model in one message (int8, within 8 KB);"
        " 1: only the whole-frame vector, as devices before region vectors sent (a model without regions always"
        " sends version 1).",
    )
    queue_capacity: int = Field(
        default=100, ge=1, le=100_000, description="Messages kept while disconnected; when full the oldest is dropped."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="How long one publish may wait for its acknowledgement.")
    file_path: str | None = Field(default=None, description="JSON-lines output for kind=file.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        from edge_component.publishers.base import publisher_kinds  # the publishers import this module

        return _registered_kind(value, publisher_kinds(), "edge_component.publishers")

    @model_validator(mode="after")
    def _needs(self) -> PublishConfig:
        if self.kind == "file" and not self.file_path:
            raise ValueError("publish.file_path is required when publish.kind is 'file'")
        return self


class ThumbnailConfig(_Model):
    """A small JPEG of the prepared frame on ``visualsearch/{device_id}/thumbnail``, so people can see what the
    camera searched with. Off by default: it costs bandwidth (≤ 8 KB/s) and shows the scene in the cloud."""

    enabled: bool = Field(default=False, description="Publish query thumbnails (the demo turns them on).")
    interval_s: float = Field(default=1.0, ge=1.0, le=3600, description="At most one thumbnail this often.")
    max_bytes: int = Field(
        default=8192, ge=1024, le=8192, description="JPEG size limit; quality, then size, step down to fit."
    )


class HealthConfig(_Model):
    status_interval_s: float = Field(default=30.0, gt=0, description="Status message period (also sent on change).")


class EdgeConfig(_Model):
    """Everything ``visual-search edge run`` needs."""

    device_id: str = Field(
        default_factory=lambda: os.environ.get("AWS_IOT_THING_NAME", DEFAULT_DEVICE_ID),
        description="Thing name; used in topics and as MQTT client id. Default: $AWS_IOT_THING_NAME.",
    )
    source: SourceConfig = Field(default_factory=SourceConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    live: LiveSettings = Field(default_factory=LiveSettings)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    thumbnail: ThumbnailConfig = Field(default_factory=ThumbnailConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        return check_thing_name(value, "device_id")


# --- loading -------------------------------------------------------------------------------------------
def _explain(exc: ValidationError, root: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()) -> ConfigError:
    """One ``config key 'a.b': reason`` per problem; ``prefix`` places a section's errors (``live``) in the tree."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join([*prefix, *loc]) or "(top level)"
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key" + _suggestion(root or EdgeConfig, loc, prefix)
        lines.append(f"config key '{key}': {reason}")
    return ConfigError("; ".join(lines))


def _suggestion(root: type[BaseModel], loc: list[str], prefix: tuple[str, ...]) -> str:
    """ "; did you mean 'live.max_rate_hz'?" for a misspelt key (else the keys of its section)."""
    model: Any = root
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return ""
        # Optional sections (``RoiConfig | None``): the model is the one BaseModel among the union's members.
        candidates = [field.annotation, *getattr(field.annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if model is None:
        return ""
    names = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{'.'.join([*prefix, *loc[:-1], close[0]])}'?"
    return f" (keys here: {', '.join(names)})"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(*layers: dict[str, Any] | None) -> EdgeConfig:
    """Later layers win. Raises :class:`ConfigError` naming every bad key."""
    data: dict[str, Any] = {}
    for layer in layers:
        if layer:
            data = merge(data, layer)
    data.pop("accessControl", None)  # the recipe keeps IPC policy beside settings; not ours to validate
    data.pop("runtime", None)  # read by the Install step (edge_component/packaging/device_install.py), not by Run
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_one_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, got {type(data).__name__}")
    return data


def _one_line(exc: Exception) -> str:
    # YAML errors draw a multi-line caret diagram; start-up errors are one line per problem.
    return " ".join(str(exc).split())[:300]


_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["live.max_rate_hz=5", "source.kind=video"]`` → nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.match(key):
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid: {_one_line(exc)}") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is set both as a value and as a section")
        node[parts[-1]] = value
    return out


def live_from_mapping(data: dict[str, Any], current: LiveSettings) -> LiveSettings:
    """A (partial) configuration document → new live settings; keys outside ``live`` are ignored."""
    section = data.get("live", {})
    if not isinstance(section, dict):
        raise ConfigError("config key 'live': must be a mapping")
    try:
        return LiveSettings.model_validate(merge(current.model_dump(), section))
    except ValidationError as exc:
        raise _explain(exc, LiveSettings, prefix=("live",)) from None
