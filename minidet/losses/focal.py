"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

https://arxiv.org/abs/1708.02002
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minidet.losses.focal_fused import fused_sigmoid_focal_loss
from minidet.losses.reduction import reduce_loss


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float | Tensor = 0.25,
    gamma: float | Tensor = 2.0,
    reduction: str = "none",
) -> Tensor:
    """Sigmoid focal loss, Eq. (5) of the RetinaNet paper, applied to every class independently.

    .. math::
        p_t = \\begin{cases} p & y = 1 \\\\ 1 - p & y = 0 \\end{cases},\\qquad
        \\alpha_t = \\begin{cases} \\alpha & y = 1 \\\\ 1 - \\alpha & y = 0 \\end{cases},\\qquad
        \\mathrm{FL}(p_t) = -\\alpha_t (1 - p_t)^{\\gamma} \\log(p_t)

    with :math:`p = \\sigma(x)`. ``-log(p_t)`` is computed as the binary cross-entropy with logits,
    which is exact for large ``|x|`` where ``log(sigmoid(x))`` would underflow. Equal to
    :func:`torchvision.ops.sigmoid_focal_loss` (tested).

    Args:
        logits: ``(..., C)`` float logits.
        targets: same shape, ``{0, 1}`` (or soft) float targets.
        alpha: weight of positives in ``[0, 1]``; a negative value disables the weighting. A tensor
            broadcastable to ``logits`` gives per-element values (Progressive Focal Loss uses one per level).
        gamma: focusing parameter ``>= 0``; float or broadcastable tensor.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        The loss, ``logits``-shaped for ``"none"``, else a scalar.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if isinstance(alpha, Tensor) or alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return reduce_loss(loss, reduction)


def cross_entropy_loss(logits: Tensor, targets: Tensor, reduction: str = "none") -> Tensor:
    """Binary cross-entropy, the ``gamma = 0, alpha < 0`` special case of :func:`sigmoid_focal_loss`.

    Kept as its own name so that plots can show focal loss "beside cross-entropy".
    """
    return F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)


class FocalLoss(nn.Module):
    """:func:`sigmoid_focal_loss` with fixed ``alpha`` and ``gamma``, in the interface every dense
    detector's classification loss shares (see :meth:`minidet.models.DenseDetector.classification_loss`).

    ``forward(logits (B, A, C), targets (B, A, C), pos (B, A) bool, levels (A,), num_levels)`` returns the
    per-element loss ``(B, A, C)`` and a dict of statistics to log (empty here).

    ``fused=True`` returns the loss summed over classes, ``(B, A, 1)``, from
    :func:`~minidet.losses.fused_sigmoid_focal_loss` (Triton on CUDA: loss and gradient in one pass,
    no ``(B, A, C)`` loss stored). The detector's masked per-level sums are the same; ``targets`` are
    then class indices ``(B, A)`` int64 (``-1`` for background), as the detector hands them over: no
    one-hot tensor is built at all.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, fused: bool = False) -> None:
        super().__init__()
        self.alpha, self.gamma, self.fused = alpha, gamma, fused

    def forward(self, logits: Tensor, targets: Tensor, pos: Tensor, levels: Tensor, num_levels: int
                ) -> tuple[Tensor, dict[str, Tensor]]:
        if self.fused:
            return fused_sigmoid_focal_loss(logits, targets, self.gamma, self.alpha)[..., None], {}
        return sigmoid_focal_loss(logits, targets, self.alpha, self.gamma), {}

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}" + (", fused=True" if self.fused else "")
