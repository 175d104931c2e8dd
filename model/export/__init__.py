"""Offline export: torch backbone → ONNX featurizer variants (fp32, int8, fp16) + sidecars. Needs torch."""
