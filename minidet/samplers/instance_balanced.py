"""Instance-balanced positive sampling (Libra R-CNN's code, mmdetection's ``InstanceBalancedPosSampler``).

Random sampling of positives favours large objects, which overlap many proposals. Instead each ground
truth may give at most ``round(N / G) + 1`` positives (``N`` wanted, ``G`` ground truths that have a
positive); the shortfall is filled at random from the remaining positives, and a surplus is cut at
random. The paper mentions balancing over instances only in passing; the rule is the reference code's.

**Duplicates in the reference.** The reference (``OceanPang/Libra_R-CNN``,
``mmdet/core/bbox/samplers/instance_balanced_pos_sampler.py``) finds the positives left for the fill-up
as ``set(pos_inds.cpu()) - set(sampled_inds.cpu())``: a set of 0-d tensors, which hash by identity, so
the difference removes nothing and the filler may pick RoIs that are already sampled, giving duplicate
positives (and fewer distinct ones than ``N``). minidet samples without duplicates: the fill-up draws
only from positives not yet taken, so there are ``min(N, P)`` distinct positives.
"""
from __future__ import annotations

import torch
from torch import Tensor

from minidet.samplers.ranking import as_quota, rank_in_groups, take_random


def instance_balanced_pos_mask(matched_gt: Tensor, pos: Tensor, num_expected: int | Tensor, num_gts: int,
                               generator: torch.Generator | None = None) -> Tensor:
    """Batched instance-balanced sampling of positives.

    Args:
        matched_gt: ``(B, N)`` int64 ground-truth index of each element (read where ``pos``), in ``[0, num_gts)``.
        pos: ``(B, N)`` bool positives.
        num_expected: positives wanted per image, int or ``(B,)``.
        num_gts: ``G``, the padded number of ground truths.

    Returns:
        ``(B, N)`` bool: ``min(num_expected, positives)`` positives per image, at most
        ``round(N / G_b) + 1`` from each ground truth while others still have some to give.
    """
    bsz = pos.shape[0]
    n_exp = as_quota(num_expected, bsz, pos.device)
    gt = matched_gt.clamp(0, num_gts - 1)
    per_gt_count = torch.zeros(bsz, num_gts, dtype=torch.long, device=pos.device).scatter_add_(1, gt, pos.long())
    gts_with_pos = (per_gt_count > 0).sum(1).clamp(min=1)  # (B,)
    per_gt = torch.round(n_exp.double() / gts_with_pos).long() + 1  # round half to even, as Python's round
    capped = pos & (rank_in_groups(gt, pos, num_gts, generator) < per_gt[:, None])
    filled = capped | take_random(pos & ~capped, n_exp - capped.sum(1), generator)
    trimmed = take_random(filled, n_exp, generator)  # only cuts when the caps already exceed the quota
    return torch.where((pos.sum(1) <= n_exp)[:, None], pos, trimmed)


def instance_balanced_pos_sample(gt_inds: Tensor, num_expected: int, generator: torch.Generator | None = None) -> Tensor:
    """One image: ``gt_inds`` ``(P,)`` int64 ground truth of each positive. Returns ``(min(N, P),)`` int64
    indices into ``gt_inds``, without duplicates, in increasing order (see :func:`instance_balanced_pos_mask`)."""
    if gt_inds.numel() == 0:
        return gt_inds.new_zeros(0)
    _, dense = torch.unique(gt_inds, return_inverse=True)
    mask = instance_balanced_pos_mask(dense[None], torch.ones_like(dense, dtype=torch.bool)[None], num_expected,
                                      int(dense.max()) + 1, generator)
    return mask[0].nonzero().squeeze(1)
