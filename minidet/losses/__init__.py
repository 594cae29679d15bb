"""Losses: focal, regression (smooth L1, L1, GIoU) and per-level bookkeeping."""
from minidet.losses.focal import cross_entropy_loss, sigmoid_focal_loss
from minidet.losses.levels import level_index, sum_per_level
from minidet.losses.regression import giou_loss, l1_loss, smooth_l1_loss

__all__ = [
    "cross_entropy_loss",
    "giou_loss",
    "l1_loss",
    "level_index",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "sum_per_level",
]
