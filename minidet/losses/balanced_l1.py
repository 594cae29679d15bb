"""Balanced L1 loss (Libra R-CNN, Pang et al., CVPR 2019, Sec. 3.3).

https://arxiv.org/abs/1904.02701

Smooth L1 gives outliers (hard samples, large errors) gradient 1 and inliers (easy samples) a gradient
that vanishes as the error shrinks, so inliers contribute only about 30 % of the gradient. Balanced L1
raises the inliers' gradient with a logarithm and caps the outliers' at ``gamma`` (the promoted gradient of Sec. 3.3):

.. math::
    \\frac{\\partial L_b}{\\partial x} = \\begin{cases} \\alpha \\ln(b|x| + 1) & |x| < 1 \\\\ \\gamma & \\text{otherwise} \\end{cases}

Integrating gives the balanced L1 loss, with the constraint :math:`\\alpha \\ln(b + 1) = \\gamma` so the gradient is
continuous at :math:`|x| = 1`, i.e. :math:`b = e^{\\gamma/\\alpha} - 1`, and ``C`` makes the loss continuous:

.. math::
    L_b(x) = \\begin{cases} \\frac{\\alpha}{b}(b|x| + 1)\\ln(b|x| + 1) - \\alpha|x| & |x| < 1 \\\\ \\gamma|x| + C & \\text{otherwise} \\end{cases}
    \\qquad C = \\frac{\\gamma}{b} - \\alpha.

**Paper vs code.** The reference code (mmdetection's ``balanced_l1_loss``) adds a threshold ``beta``:
for :math:`|x| < \\beta` it uses :math:`\\frac{\\alpha}{b}(b|x| + 1)\\ln(b|x|/\\beta + 1) - \\alpha|x|`, otherwise
:math:`\\gamma|x| + \\gamma/b - \\alpha\\beta`. The loss stays continuous for every ``beta``, but its gradient
at :math:`|x| = \\beta` jumps from :math:`\\gamma + \\alpha\\,(1 - \\beta)/(\\beta(b + 1))` to :math:`\\gamma`;
only ``beta = 1`` (the default, and Libra R-CNN's setting) gives the paper's function. For ``beta != 1``
the gradient at :math:`x = 0^+` is :math:`\alpha (1/\beta - 1)`, not 0, so the loss also has a kink at zero.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from minidet.losses.reduction import reduce_loss


def balanced_l1_b(alpha: float = 0.5, gamma: float = 1.5) -> float:
    """:math:`b = e^{\\gamma/\\alpha} - 1` (from the constraint :math:`\\alpha\\ln(b + 1) = \\gamma`), about 19.09 for the defaults."""
    return math.exp(gamma / alpha) - 1.0


def balanced_l1_loss(pred: Tensor, target: Tensor, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0,
                     reduction: str = "none") -> Tensor:
    """Balanced L1 loss :math:`L_b` of Libra R-CNN, Sec. 3.3 (with the reference code's ``beta``; see the module notes).

    Args:
        pred, target: ``(..., 4)`` box deltas (any shape, broadcastable).
        alpha: inlier gradient scale (0.5); gamma: outlier gradient, the upper bound of the error (1.5);
        beta: where inliers end (1.0: the paper's function).
        reduction: ``"none"`` (elementwise, same shape), ``"sum"`` or ``"mean"``.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    b = balanced_l1_b(alpha, gamma)
    x = (pred - target).abs()
    inlier = alpha / b * (b * x + 1) * torch.log(b * x / beta + 1) - alpha * x
    outlier = gamma * x + gamma / b - alpha * beta
    loss = torch.where(x < beta, inlier, outlier)
    return reduce_loss(loss, reduction)


def balanced_l1_grad(x: Tensor, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0) -> Tensor:
    """Closed-form :math:`\\partial L_b / \\partial |x|` of :func:`balanced_l1_loss` (the paper's promoted gradient when ``beta = 1``):
    :math:`\\alpha\\ln(b|x|/\\beta + 1) + \\alpha(b|x| + 1)/(b|x| + \\beta) - \\alpha` inside, ``gamma`` outside."""
    b = balanced_l1_b(alpha, gamma)
    x = x.abs()
    inner = alpha * torch.log(b * x / beta + 1) + alpha * (b * x + 1) / (b * x + beta) - alpha
    return torch.where(x < beta, inner, torch.full_like(x, gamma))
