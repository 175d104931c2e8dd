"""Which model ids cameras use now, read from the match store: each device's latest match record names the
model id its message carried (design.md "Match record"), and the devices set orders devices by last seen.

A model is *in use* when at least one device seen within the window has a latest record of that model. No
per-message write is added for this: it reads what the search already stores (one ZREVRANGE page and one
LINDEX per device, pipelined). A device that has been silent for longer than the window is not counted:
when it comes back on a retired model it is refused with ``no_index_for_model`` and its log names the ids
there are.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from cloud_lambda.matches import MatchStore

PAGE = 500


@dataclass
class ModelUsage:
    window_s: float
    devices: Counter[str] = field(default_factory=Counter)
    """model id → devices whose latest record (within the window) used it."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """model id → up to 5 of those devices (to name in a refusal)."""
    scanned: int = 0

    def in_use(self, model_id: str) -> bool:
        return self.devices[model_id] > 0


def model_usage(store: MatchStore, window_s: float, now: float | None = None) -> ModelUsage:
    """Devices per model id among those seen in the last ``window_s`` seconds (newest first, paged)."""
    since = (time.time() if now is None else now) - window_s
    usage = ModelUsage(window_s)
    offset = 0
    while True:
        page, _total = store.page(offset, PAGE, with_records=True)
        for entry in page:
            if entry["last_seen"] < since:
                return usage
            usage.scanned += 1
            record = entry.get("record")
            model_id = record.get("model_id") if isinstance(record, dict) else None
            if isinstance(model_id, str):
                usage.devices[model_id] += 1
                examples = usage.examples.setdefault(model_id, [])
                if len(examples) < 5:
                    examples.append(entry["device_id"])
        if len(page) < PAGE:
            return usage
        offset += PAGE
