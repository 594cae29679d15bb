"""Assigners: which anchor or point learns which object (hard: max-IoU, ATSS, FCOS; soft: Dual Weighting)."""
from minidet.assigners.atss import ATSSAssigner
from minidet.assigners.dw_weights import (center_prior, consistency, dw_neg_weight, dw_pos_weight, inside_boxes,
                                          localization_score, neg_prob, neg_prob_per_class, paper_consistency)
from minidet.assigners.fcos import FCOS_RANGES, FCOSAssigner, ltrb_targets, scaled_ranges
from minidet.assigners.max_iou import AssignResult, MaxIoUAssigner

__all__ = [
    "ATSSAssigner", "AssignResult", "FCOSAssigner", "FCOS_RANGES", "MaxIoUAssigner", "center_prior", "consistency",
    "dw_neg_weight", "dw_pos_weight", "inside_boxes", "localization_score", "ltrb_targets", "neg_prob",
    "neg_prob_per_class", "paper_consistency", "scaled_ranges",
]
