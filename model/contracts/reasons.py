"""Every reason code a :class:`~model.contracts.errors.Rejected` message may carry, and what it means.

The codes are counter names (``rejected.<reason>`` in the search's counters, ``rejected:<reason>`` in the
rule bridge's) and log fields, so they are part of the contract: dashboards and alarms key on them. A test
(``tests/model/contracts/test_reasons.py``) checks that every code raised in product code is listed here. Image
uploads have their own codes (:data:`model.image_rules.REASONS`).
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    # the envelope: bytes, JSON, object
    "empty": "the payload is empty",
    "oversize": "over its size limit (model.contracts.limits): 128 KiB for a feature message (8 KiB for version 2), 16 KiB for a status",
    "not_json": "not UTF-8 JSON, or a value JSON cannot carry",
    "not_object": "JSON, but not an object",
    "not_finite": "a NaN or infinite number",
    "too_deep": "nested deeper than model.contracts.bounded_json.MAX_DEPTH",
    "bad_text": "a string with a lone surrogate, which no UTF-8 encoder takes",
    "missing_field": "a required field is missing",
    "bad_type": "a field has the wrong JSON type",
    "unknown_version": "a wire or status version this side does not read",
    # where it came from
    "bad_topic": "not visualsearch/<thing name>/<kind>, or an IoT rule event without a valid topic_device",
    "bad_device_id": "the device id is not a thing name",
    "device_mismatch": "the message's device id differs from its topic's: refused as spoofed",
    # the feature message (model.contracts.wire)
    "bad_model_id": "the model id has characters outside [A-Za-z0-9_.:+-] or is too long",
    "bad_seq": "the sequence number is outside [0, 2^63)",
    "bad_ts": "the capture time is not a finite epoch time in seconds",
    "bad_dtype": "the vector's dtype is not float16 or float32 (version 2: int8 or float16)",
    "bad_regions": "version 2: 'regions' is not 1..16, or the encoder was given no [R, dim] region vectors",
    "bad_scales": "version 2: 'scales' is not one positive finite number per int8 region (or is sent with float16)",
    "bad_vector": "the vector is not a base64 string",
    "bad_base64": "the vector is not valid base64",
    "wrong_dim": "dim out of range, or the vector's length or the index's dimension disagrees with it",
    "not_normalized": "the vector is not L2-normalized",
    "bad_frame": "frame is not {w, h} with positive sizes",
    "bad_timing": "timing_ms is not an object of at most 16 finite stage timings",
    "ts_out_of_range": "the capture time is ahead of the cloud's clock or older than the idempotency window",
    "no_index_for_model": "no index under the index root was built with the message's model id (vectors of"
    " different models cannot be compared); the message names the ids there are",
    # the query thumbnail (model.contracts.thumbnail)
    "bad_jpeg": "the thumbnail is not a complete JPEG (SOI ... EOI) in a base64 string",
    # the status message (model.contracts.status)
    "bad_state": "state is not online, degraded or offline",
}
