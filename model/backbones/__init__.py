"""Backbone registry (torch, export time only). One module per backbone registers itself."""

from model.backbones.base import BACKBONES, Backbone, BackboneSpec, get_backbone

__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "get_backbone"]
