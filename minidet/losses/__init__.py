"""Losses: focal (also fused: loss and gradient in one Triton pass) and Progressive Focal Loss,
regression (smooth L1, L1, GIoU, Balanced L1), the FCOS/ATSS centerness losses, the Dual Weighting losses, per-level
bookkeeping and the level-wise resampling of UMOP."""
from minidet.losses.balanced_l1 import balanced_l1_b, balanced_l1_grad, balanced_l1_loss
from minidet.losses.centerness import centerness_weighted_losses
from minidet.losses.dual_weighting import bce_one, bce_zero, dw_neg_loss, dw_normalizers, dw_pos_losses
from minidet.losses.focal import FocalLoss, cross_entropy_loss, sigmoid_focal_loss
from minidet.losses.focal_fused import fused_sigmoid_focal_loss, one_hot_to_labels
from minidet.losses.levels import level_index, sum_per_level
from minidet.losses.lrp import LRP_FORMS, lrp_form, normalize_level_losses
from minidet.losses.mimic import mean_cosine, mimic_loss
from minidet.losses.pfl import ProgressiveFocalLoss, pfl_hyperparams, pfl_hyperparams_per_level
from minidet.losses.regression import giou_loss, l1_loss, smooth_l1_loss

__all__ = [
    "balanced_l1_b",
    "balanced_l1_grad",
    "balanced_l1_loss",
    "FocalLoss",
    "ProgressiveFocalLoss",
    "bce_one",
    "bce_zero",
    "centerness_weighted_losses",
    "cross_entropy_loss",
    "dw_neg_loss",
    "dw_normalizers",
    "dw_pos_losses",
    "fused_sigmoid_focal_loss",
    "giou_loss",
    "l1_loss",
    "LRP_FORMS",
    "level_index",
    "lrp_form",
    "mean_cosine",
    "mimic_loss",
    "normalize_level_losses",
    "one_hot_to_labels",
    "pfl_hyperparams",
    "pfl_hyperparams_per_level",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "sum_per_level",
]
