"""Detectors composed from backbone, neck and head."""
from minidet.models.detectors.atss import ATSS
from minidet.models.detectors.dense import DenseDetector
from minidet.models.detectors.dw import DualWeighting
from minidet.models.detectors.fcos import FCOS
from minidet.models.detectors.retinanet import RetinaNet

__all__ = ["ATSS", "DenseDetector", "DualWeighting", "FCOS", "RetinaNet"]
