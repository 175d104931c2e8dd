"""Inference backends. One module per runtime, each registering itself with :mod:`model.runtime.base`."""

from model.runtime.base import BACKENDS, BackendInfo, InferenceBackend, available_backends, create_backend

__all__ = ["BACKENDS", "BackendInfo", "InferenceBackend", "available_backends", "create_backend"]
