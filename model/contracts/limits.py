"""Size limits every side enforces with the same numbers (device before sending, bridge and cloud on arrival)."""

from __future__ import annotations

MAX_PAYLOAD_BYTES = 128 * 1024
"""AWS IoT Core's MQTT payload limit (IoT Core quotas, "Message size"): a publish over it never reaches a rule."""

MAX_STATUS_BYTES = 16 * 1024
"""A status message, raw bytes: far more than the ~600 bytes a device sends, small enough to keep per device."""

MAX_DIM = 8192
"""The largest vector a feature message may carry."""
