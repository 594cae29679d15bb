"""IoU-balanced negative sampling (Libra R-CNN, Pang et al., CVPR 2019, Sec. 3.1).

https://arxiv.org/abs/1904.02701

Random sampling draws negatives with probability :math:`p = N / M` (``N`` wanted out of ``M``
candidates); since easy negatives (IoU near 0 with every object) vastly outnumber hard ones, most drawn
negatives are easy. IoU-balanced sampling splits the IoU range into ``K`` equal bins and draws
``N / K`` from each, so every bin ``k`` with ``M_k`` candidates is sampled with probability (Eq. 1)

.. math:: p_k = \\frac{N}{K} \\cdot \\frac{1}{M_k}, \\quad k \\in [0, K).

A bin with fewer than ``N / K`` candidates is taken whole and the shortfall is filled at random from
the rest. Optionally a *floor* group (IoU below ``floor_thr``) is sampled separately at random with a
share ``floor_fraction`` of the quota (mmdetection's ``IoUBalancedNegSampler``; Libra R-CNN's config
uses ``floor_thr=-1``, i.e. no floor group, and ``K = 3``).

**Where the bins end.** mmdetection sets the bins' upper end to the highest IoU among *all* candidates
of the image, positives and the ground truths added as proposals included, so the range is
``[0, 1]`` whenever ground truths are proposals, and with ``K = 3`` the top bin ``[0.67, 1)`` holds no
negative (negatives have IoU < 0.5): only two bins receive quota and the shortfall is filled at random.
minidet's default bins the negatives' own IoU range (so ``K`` bins really split the negatives);
pass ``bin_upper`` (e.g. the highest IoU of all candidates) for mmdetection's behaviour.

**The floor the code switches on.** The authors' sampler (``OceanPang/Libra_R-CNN``,
``mmdet/core/bbox/samplers/iou_balanced_neg_sampler.py``, the same in mmdetection 2.x) is configured with
``floor_thr = -1`` but, in the branch that handles it, sets ``self.floor_thr = 0``: from its second call
on (the whole of training), negatives with IoU exactly 0 form a floor set and the bins cover IoU > 0
only; with ``floor_fraction = 0`` the floor is drawn from only to fill a shortfall. So which setting
reproduces which source:

==============================================  =====================================================
source                                          arguments here
==============================================  =====================================================
the paper (Eq. 1: ``K`` IoU bins, no floor)     ``floor_thr=-1, bin_upper=None`` (minidet's default,
                                                which bins the negatives' own IoU range)
the code's first call                           ``floor_thr=-1``, ``bin_upper`` = highest IoU of all
                                                candidates
the code from then on (and mmdetection 2.x)     ``floor_thr=0``, ``bin_upper`` = highest IoU of all
                                                candidates
==============================================  =====================================================

(:class:`~minidet.samplers.proposal_sampler.ProposalSampler` names them ``iou_balanced_form``.)
"""
from __future__ import annotations

import torch
from torch import Tensor

from minidet.samplers.ranking import as_quota, rank_in_groups, take_random


def iou_balanced_neg_mask(
    max_ious: Tensor,
    candidates: Tensor,
    num_expected: int | Tensor,
    num_bins: int = 3,
    floor_thr: float = -1.0,
    floor_fraction: float = 0.0,
    bin_upper: float | Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Batched IoU-balanced sampling of negatives (Eq. 1), returning a mask.

    Args:
        max_ious: ``(B, N)`` each element's highest IoU with a ground truth (negative values count as 0).
        candidates: ``(B, N)`` bool, the negatives to choose from.
        num_expected: negatives wanted per image, int or ``(B,)``.
        num_bins: ``K``.
        floor_thr: with ``floor_thr >= 0``, negatives with IoU below it (``== 0`` when ``floor_thr == 0``)
            form a floor group drawn at random; the bins then start at ``floor_thr`` (at 0 otherwise).
        floor_fraction: share of ``num_expected`` reserved for the floor group.
        bin_upper: upper end of the bins, a float or ``(B,)``; ``None`` (default) uses the highest IoU among
            each image's binned negatives, with the top bin closed. A given value makes every bin
            half-open ``[start, end)`` as in mmdetection.

    Returns:
        ``(B, N)`` bool: ``min(num_expected, candidates)`` negatives per image.
    """
    bsz, _ = candidates.shape
    dev = candidates.device
    n_exp = as_quota(num_expected, bsz, dev)
    ious = max_ious.float().clamp(min=0)
    if floor_thr > 0:
        floor, binned_set, lower = candidates & (ious < floor_thr), candidates & (ious >= floor_thr), floor_thr
    elif floor_thr == 0:
        floor, binned_set, lower = candidates & (ious == 0), candidates & (ious > 0), 0.0
    else:
        floor, binned_set, lower = torch.zeros_like(candidates), candidates, 0.0
    n_iou = (n_exp.double() * (1.0 - floor_fraction)).floor().long()

    if bin_upper is None:
        upper = ious.masked_fill(~binned_set, lower).amax(dim=1)  # (B,)
    else:
        upper = torch.as_tensor(bin_upper, dtype=torch.float32, device=dev).expand(bsz)
    width = ((upper - lower) / num_bins).clamp(min=1e-12)[:, None]
    bins = ((ious - lower) / width).floor().long()
    if bin_upper is None:
        bins = bins.clamp(max=num_bins - 1)  # the highest negative belongs to the top bin
    in_bins = binned_set & (bins >= 0) & (bins < num_bins)
    per_bin = (n_iou // num_bins)[:, None]
    drawn = in_bins & (rank_in_groups(bins, in_bins, num_bins, generator) < per_bin)
    drawn = drawn | take_random(binned_set & ~drawn, n_iou - drawn.sum(1), generator)  # a bin ran short
    enough = binned_set.sum(1) <= n_iou  # too few to choose from: take them all
    iou_taken = torch.where(enough[:, None], binned_set, drawn)

    taken = iou_taken | take_random(floor, n_exp - iou_taken.sum(1), generator)
    return taken | take_random(candidates & ~taken, n_exp - taken.sum(1), generator)


def iou_balanced_neg_sample(
    max_ious: Tensor,
    num_expected: int,
    num_bins: int = 3,
    floor_thr: float = -1.0,
    floor_fraction: float = 0.0,
    generator: torch.Generator | None = None,
    bin_upper: float | None = None,
) -> Tensor:
    """IoU-balanced sampling of one image's negatives (Eq. 1); see :func:`iou_balanced_neg_mask`.

    Args:
        max_ious: ``(M,)`` highest IoU of each negative candidate with any ground truth.
        num_expected: ``N``, negatives wanted.

    Returns:
        ``(min(N, M),)`` int64 indices into ``max_ious``, without duplicates, in increasing order.
    """
    mask = iou_balanced_neg_mask(max_ious[None], torch.ones_like(max_ious, dtype=torch.bool)[None], num_expected,
                                 num_bins, floor_thr, floor_fraction, bin_upper, generator)
    return mask[0].nonzero().squeeze(1)
