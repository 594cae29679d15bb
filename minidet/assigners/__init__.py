"""Assigners: which anchor or point learns which object."""
from minidet.assigners.max_iou import AssignResult, MaxIoUAssigner

__all__ = ["AssignResult", "MaxIoUAssigner"]
