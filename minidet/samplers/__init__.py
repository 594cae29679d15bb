"""Samplers: which anchors or RoIs of an image contribute to the loss.

Each sampler works on a batch at once and returns a boolean mask (``*_mask``); the one-image versions
(``*_sample``) return indices, as in the papers' pseudo-code.
"""
from minidet.samplers.hard_negative import hard_negative_mask
from minidet.samplers.instance_balanced import instance_balanced_pos_mask, instance_balanced_pos_sample
from minidet.samplers.iou_balanced import iou_balanced_neg_mask, iou_balanced_neg_sample
from minidet.samplers.random_sampling import random_sample, sample_pos_neg
from minidet.samplers.ranking import rank_in_groups, take_random

__all__ = ["hard_negative_mask", "instance_balanced_pos_mask", "instance_balanced_pos_sample", "iou_balanced_neg_mask",
           "iou_balanced_neg_sample", "random_sample", "rank_in_groups", "sample_pos_neg", "take_random"]
