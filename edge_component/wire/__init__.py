"""Wire format v1 (docs/architecture.md): one codec encodes on the device and decodes in the cloud."""

from edge_component.wire.codec import (
    MAX_PAYLOAD_BYTES,
    WIRE_VERSION,
    FeatureMessage,
    WireError,
    decode,
    decode_vector,
    encode,
    encode_vector,
    features_topic,
    matches_topic,
    status_topic,
)

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "WIRE_VERSION",
    "FeatureMessage",
    "WireError",
    "decode",
    "decode_vector",
    "encode",
    "encode_vector",
    "features_topic",
    "matches_topic",
    "status_topic",
]
