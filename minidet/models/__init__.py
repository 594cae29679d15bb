"""Models: backbones, necks, heads, anchors, detectors and their factories."""
from minidet.models.anchors import AnchorGenerator
from minidet.models.detectors import DenseDetector, RetinaNet
from minidet.models.factory import BACKBONES, build_backbone, build_retinanet
from minidet.models.postprocess import postprocess_dense

__all__ = ["AnchorGenerator", "BACKBONES", "DenseDetector", "RetinaNet", "build_backbone", "build_retinanet", "postprocess_dense"]
