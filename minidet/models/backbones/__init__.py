"""Backbones: feature extractors returning ``{"c2": ..., "c5": ...}`` with ``out_channels`` and ``strides``."""
from minidet.models.backbones.resnet import ResNetBackbone, load_state_dict_checked
from minidet.models.backbones.tiny import TinyBackbone

__all__ = ["ResNetBackbone", "TinyBackbone", "load_state_dict_checked"]
