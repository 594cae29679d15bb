"""Models: backbones, necks, heads, anchors and points, detectors and their factories."""
from minidet.models.anchors import AnchorGenerator
from minidet.models.detectors import (ATSS, FCOS, DenseDetector, Detector, DualWeighting, FasterRCNN, MimicDet,
                                      RegionProposalNetwork, RetinaNet)
from minidet.models.factory import (BACKBONES, build_atss, build_backbone, build_dw, build_faster_rcnn, build_fcos,
                                    build_libra_rcnn, build_mimicdet, build_pyramid, build_retinanet)
from minidet.models.points import PointGenerator
from minidet.models.postprocess import postprocess_dense
from minidet.models.torchvision_weights import (build_fcos_like_torchvision, build_retinanet_like_torchvision,
                                                from_torchvision, load_torchvision_state)

__all__ = [
    "ATSS", "AnchorGenerator", "BACKBONES", "DenseDetector", "DualWeighting", "FCOS", "PointGenerator", "RetinaNet",
    "build_atss", "build_backbone", "build_dw", "build_fcos", "build_pyramid", "build_retinanet", "postprocess_dense",
    "Detector", "FasterRCNN", "RegionProposalNetwork", "build_faster_rcnn", "build_libra_rcnn",
    "MimicDet", "build_mimicdet",
    "build_fcos_like_torchvision", "build_retinanet_like_torchvision", "from_torchvision", "load_torchvision_state",
]
