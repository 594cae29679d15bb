"""Detectors composed from backbone, neck and head."""
from minidet.models.detectors.atss import ATSS
from minidet.models.detectors.base import Detector
from minidet.models.detectors.dense import DenseDetector
from minidet.models.detectors.dw import DualWeighting
from minidet.models.detectors.faster_rcnn import FasterRCNN
from minidet.models.detectors.fcos import FCOS
from minidet.models.detectors.mimicdet import MimicDet
from minidet.models.detectors.retinanet import RetinaNet
from minidet.models.detectors.rpn import RegionProposalNetwork

__all__ = ["ATSS", "DenseDetector", "Detector", "DualWeighting", "FCOS", "FasterRCNN", "MimicDet", "RegionProposalNetwork", "RetinaNet"]
