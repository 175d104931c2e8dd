"""Query thumbnails on the device: the prepared frame as a JPEG of at most ``thumbnail.max_bytes``, at most once
per ``thumbnail.interval_s``, sent "latest wins" at QoS 0 so it never delays or displaces a feature message.

The prepared frame (the model input, e.g. 224×224 BGR) is exactly what the search was made from, crop included,
so the web app shows what the match is about.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from edge_component.config import ThumbnailConfig
from edge_component.publishers.base import Publisher
from model.contracts.thumbnail import Thumbnail, encode_thumbnail, thumbnail_topic
from model.logs import log_event

log = logging.getLogger(__name__)

QUALITIES = (75, 60, 45, 30)
SCALES = (1.0, 0.75, 0.5)


def jpeg_within(image: np.ndarray, max_bytes: int) -> bytes | None:
    """The best JPEG of ``image`` that fits ``max_bytes``: lower quality first, then smaller; None if none fits."""
    for scale in SCALES:
        scaled = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for quality in QUALITIES:
            ok, data = cv2.imencode(".jpg", scaled, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(data) <= max_bytes:
                return bytes(data.tobytes())
    return None


class ThumbnailSender:
    """Decides when a thumbnail is due and hands it to the publisher; counts what it sent and skipped."""

    def __init__(self, config: ThumbnailConfig, device_id: str, publisher: Publisher) -> None:
        self.config = config
        self.device_id = device_id
        self.publisher = publisher
        self.topic = thumbnail_topic(device_id)
        self.sent = 0
        self.too_large = 0
        self._last_at = -float("inf")

    def offer(self, prepared: np.ndarray, seq: int, ts: float) -> bool:
        """Send ``prepared`` (the frame of feature message ``seq``) if enabled and due; True when sent."""
        now = time.monotonic()
        if not self.config.enabled or now - self._last_at < self.config.interval_s:
            return False
        self._last_at = now
        jpeg = jpeg_within(prepared, self.config.max_bytes)
        if jpeg is None:
            self.too_large += 1
            log_event(log, "thumbnail_over_size_limit", logging.WARNING, seq=seq)
            return False
        self.publisher.publish_latest(self.topic, encode_thumbnail(Thumbnail(self.device_id, seq, ts, jpeg)), qos=0)
        self.sent += 1
        return True
