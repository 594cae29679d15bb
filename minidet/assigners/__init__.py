"""Assigners: which anchor or point learns which object."""
from minidet.assigners.atss import ATSSAssigner
from minidet.assigners.max_iou import AssignResult, MaxIoUAssigner

__all__ = ["ATSSAssigner", "AssignResult", "MaxIoUAssigner"]
