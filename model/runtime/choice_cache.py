"""The file where ``auto`` keeps its measured choice, per model id (with the fingerprint it was measured under).

Where it lives by default: ``$VISUAL_SEARCH_BACKEND_CACHE`` if set; on a Greengrass core the component's work
folder (the nucleus starts every lifecycle script there and sets ``SVCUID``: ``ShellRunner.Default.setup`` in
aws-greengrass/aws-greengrass-nucleus), which survives restarts and is the component's own; elsewhere the
user cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``). A cache that cannot be read or written is logged and
ignored: the device then measures at every start, it never fails to start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model.logs import log_event

log = logging.getLogger(__name__)

CACHE_ENV = "VISUAL_SEARCH_BACKEND_CACHE"
FILE_NAME = "backend-choice.json"
FORMAT_VERSION = 1


def default_cache_path() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    if os.environ.get("SVCUID"):  # running as a Greengrass component: the cwd is its work folder
        return Path.cwd() / FILE_NAME
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-visual-search" / FILE_NAME


@dataclass(frozen=True)
class CachedChoice:
    """One model's measured choice on one machine."""

    backend: str
    device: str
    measured_ms: dict[str, float]
    skipped: dict[str, str]
    measured_at: str
    fingerprint: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any) -> CachedChoice | None:
        try:
            return cls(
                backend=str(raw["backend"]),
                device=str(raw["device"]),
                measured_ms={str(k): float(v) for k, v in raw["measured_ms"].items()},
                skipped={str(k): str(v) for k, v in raw.get("skipped", {}).items()},
                measured_at=str(raw["measured_at"]),
                fingerprint={str(k): str(v) for k, v in raw["fingerprint"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


class ChoiceCache:
    """Read and write ``path`` (JSON: ``{"version": 1, "models": {entry: CachedChoice}}``), atomically; an entry is
    the model id, plus ``?threads=..&spinning=..`` when those are set (``selection.cache_entry``)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log_event(
                log,
                "backend_choice_cache_unreadable",
                logging.WARNING,
                path=str(self.path),
                error=str(exc),
            )
            return {}
        if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION or not isinstance(raw.get("models"), dict):
            return {}
        return raw["models"]

    def get(self, model_id: str) -> CachedChoice | None:
        return CachedChoice.from_json(self._load().get(model_id))

    def put(self, model_id: str, choice: CachedChoice) -> None:
        """Store ``choice`` (other models' entries kept); a failure is logged, never raised."""
        models = self._load()
        models[model_id] = asdict(choice)
        self._write(models)

    def forget(self, model_id: str) -> None:
        """Drop every entry of ``model_id`` (all its settings) so the next start measures again."""
        models = self._load()
        kept = {key: value for key, value in models.items() if key != model_id and not key.startswith(model_id + "?")}
        if len(kept) != len(models):
            self._write(kept)

    def _write(self, models: dict[str, Any]) -> None:
        body = json.dumps({"version": FORMAT_VERSION, "models": models}, indent=1, sort_keys=True)
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Write-then-rename: a crash or a second process never leaves a half-written file behind.
            fd, tmp = tempfile.mkstemp(prefix=".backend-choice-", dir=self.path.parent)
            with os.fdopen(fd, "w") as handle:
                handle.write(body)
            os.replace(tmp, self.path)
            tmp = None
        except OSError as exc:
            log_event(log, "backend_choice_not_cached", logging.WARNING, path=str(self.path), error=str(exc))
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
