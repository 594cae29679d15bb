"""Assigners: which anchor or point learns which object (max-IoU, ATSS, FCOS)."""
from minidet.assigners.atss import ATSSAssigner
from minidet.assigners.fcos import FCOS_RANGES, FCOSAssigner, ltrb_targets, scaled_ranges
from minidet.assigners.max_iou import AssignResult, MaxIoUAssigner

__all__ = [
    "ATSSAssigner", "AssignResult", "FCOSAssigner", "FCOS_RANGES", "MaxIoUAssigner", "ltrb_targets", "scaled_ranges",
]
