"""Image validation for catalog indexing and photo search: the rules live in :mod:`model.image_rules`
(shared with fine-tuning); these names are kept for the cloud side's callers."""

from __future__ import annotations

from model.image_rules import (
    JPEG_SOI,
    MAX_ASPECT,
    MAX_BYTES,
    MAX_SIDE,
    MIN_SIDE,
    OTHER_FORMATS,
    PNG_SIGNATURE,
    REASONS,
    SOF_MARKERS,
    STANDALONE_MARKERS,
    ImageInfo,
    ImageRejected,
    check_complete,
    check_dimensions,
    decode,
    jpeg_reduction,
    sniff,
    validate,
)

__all__ = [
    "JPEG_SOI",
    "MAX_ASPECT",
    "MAX_BYTES",
    "MAX_SIDE",
    "MIN_SIDE",
    "OTHER_FORMATS",
    "PNG_SIGNATURE",
    "REASONS",
    "SOF_MARKERS",
    "STANDALONE_MARKERS",
    "ImageInfo",
    "ImageRejected",
    "check_complete",
    "check_dimensions",
    "decode",
    "jpeg_reduction",
    "sniff",
    "validate",
]
