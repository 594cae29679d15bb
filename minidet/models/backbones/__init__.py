"""Backbones: feature extractors returning ``{"c2": ..., "c5": ...}`` with ``out_channels`` and ``strides``."""
from minidet.models.backbones.resnet import ResNetBackbone, load_state_dict_checked, read_state_dict
from minidet.models.backbones.tiny import PRETRAINED_TINY, SHAPES_PRETRAINED, TinyBackbone

__all__ = ["ResNetBackbone", "TinyBackbone", "PRETRAINED_TINY", "SHAPES_PRETRAINED", "load_state_dict_checked",
           "read_state_dict"]
