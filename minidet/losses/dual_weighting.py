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

Logs are clamped at -100 as :func:`torch.nn.functional.binary_cross_entropy` does (that function
itself refuses to run under CUDA autocast, which the trainer uses).
"""
from __future__ import annotations

import torch
from torch import Tensor

from minidet.distributed import loss_normalizer


def bce_one(p: Tensor) -> Tensor:
    """Binary cross-entropy of probability ``p`` against target 1: :math:`-\\log p` (clamped at 100)."""
    return -torch.log(p).clamp(min=-100.0)


def bce_zero(p: Tensor) -> Tensor:
    """Binary cross-entropy of probability ``p`` against target 0: :math:`-\\log(1 - p)` (clamped at 100)."""
    return -torch.log1p(-p).clamp(min=-100.0)


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
