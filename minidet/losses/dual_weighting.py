"""The losses of Dual Weighting (Li et al., CVPR 2022, Sec. 3; the authors' ``DWHead._loss_single`` and
``loss``), given the weights of :mod:`minidet.assigners.dw_weights`.

https://arxiv.org/abs/2203.09730

With ``s`` the joint score :math:`\\sigma(\\mathrm{cls})\\,\\sigma(\\mathrm{obj})`, ``p_cls`` the score of
``g``'s class and ``p_loc`` the localisation score at each (point, ground truth) pair:

.. math::
    \\mathcal{L}_{cls}^{pos} = \\frac{\\lambda}{N_{gt}} \\sum_{g} \\sum_{i} w^{pos}_{ig}\\,(-\\log p^{cls}_{ig}),
    \\qquad
    \\mathcal{L}_{loc} = \\frac{\\lambda}{N_{gt}} \\sum_{g} \\sum_{i} w^{pos}_{ig}\\,(-\\log p^{loc}_{ig})

.. math::
    \\mathcal{L}_{cls}^{neg} = \\frac{1}{\\sum_{i, c} (1 - P^{neg}_{ic})} \\sum_{i} \\sum_{c}
    w^{neg}_{ic}\\,(-\\log(1 - s_{ic}))

``lambda = 0.25`` (the authors' factor on both positive terms); ``-log p_loc = beta * GIoU loss``. The
normalisers are the authors': the number of ground truths, and the total "positiveness" ``1 - P_neg``,
both averaged over processes (``reduce_mean``) and clamped to at least 1.

The probabilities are clamped *before* the log, into ``[tiny, 1 - eps/2]`` of their dtype (for float32:
``1.2e-38`` and ``1 - 2^-24``, the largest float32 below 1), so both logs stay finite and so do their
gradients. Clamping the log's output instead (as :func:`torch.nn.functional.binary_cross_entropy` clamps at
-100; that function refuses to run under autocast) leaves a ``0 * inf = NaN`` gradient behind a finite loss
once ``s = sigmoid(cls) * sigmoid(obj)`` rounds to exactly 1 (both logits above about 16.6 in float32) or
to 0. A clamped probability has zero gradient, as the clamped log had.
"""
from __future__ import annotations

import torch
from torch import Tensor

from minidet.distributed import loss_normalizer


def bce_one(p: Tensor) -> Tensor:
    """Binary cross-entropy of probability ``p`` against target 1: :math:`-\\log p`, with ``p`` clamped to at
    least the dtype's smallest normal number (at most 87.3 for float32; finite gradient everywhere)."""
    return -torch.log(p.clamp(min=torch.finfo(p.dtype).tiny))


def bce_zero(p: Tensor) -> Tensor:
    """Binary cross-entropy of probability ``p`` against target 0: :math:`-\\log(1 - p)`, with ``p`` clamped to
    at most the largest number below 1 of its dtype (at most 16.6 for float32; finite gradient everywhere)."""
    return -torch.log1p(-p.clamp(max=1.0 - torch.finfo(p.dtype).eps / 2))


def dw_pos_losses(p_cls: Tensor, p_loc: Tensor, w_pos: Tensor, weight: float = 0.25) -> tuple[Tensor, Tensor]:
    """Un-normalised positive classification and localisation losses of every (point, ground truth).

    Args:
        p_cls, p_loc: ``(B, A, G)`` probabilities with gradient.
        w_pos: ``(B, A, G)`` positive weights (:func:`~minidet.assigners.dw_weights.dw_pos_weight`).
        weight: ``lambda`` (0.25).

    Returns:
        ``(B, A, G)`` classification and ``(B, A, G)`` localisation terms.
    """
    w = weight * w_pos.detach()
    return w * bce_one(p_cls), w * bce_one(p_loc)


def dw_neg_loss(scores: Tensor, w_neg: Tensor) -> Tensor:
    """Un-normalised negative loss ``w_neg * (-log(1 - s))``, ``(B, A, C)`` from ``(B, A, C)`` inputs."""
    return w_neg * bce_zero(scores)


def dw_normalizers(gt_valid: Tensor, p_neg: Tensor) -> tuple[Tensor, Tensor]:
    """``(N_gt, sum (1 - P_neg))``, each clamped to at least 1 and pooled over processes
    (:func:`~minidet.distributed.loss_normalizer`).

    ``gt_valid`` ``(B, G)`` bool; ``p_neg`` ``(B, A, C)``. Both are scalars on device, without gradient."""
    num_gt = loss_normalizer(gt_valid.sum().float())
    positiveness = loss_normalizer((1 - p_neg.detach()).sum().float())
    return num_gt, positiveness
