"""MimicDet's mimic loss (Lu et al., ECCV 2020, Sec. 3, dual-path mimicking).

https://arxiv.org/abs/2009.11528 — no public code exists; this follows the paper's description.

For a random subset :math:`B_m` of the T-head's samples, the S-head's outputs are read at each box's
original anchor position and pulled towards the T-head's, path by path: the classification path compares
the classification logits, the regression path the regression features (1024-d in the paper). The
distance is one minus the cosine similarity,

.. math::
    L_{mimic} = \\frac{1}{|B_m|} \\sum_{i \\in B_m} \\Big[\\big(1 - \\cos(s^{cls}_i, t^{cls}_i)\\big)
                + \\big(1 - \\cos(s^{reg}_i, t^{reg}_i)\\big)\\Big],
    \\qquad \\cos(a, b) = \\frac{a \\cdot b}{\\max(\\|a\\|\\,\\|b\\|, \\epsilon)}.

The teacher's side is detached (minidet's choice: the T-head learns from its own detection loss only,
and the mimic loss moves the S-head and, through it, the backbone).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def mean_cosine(student: Tensor, teacher: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean cosine similarity along the last dimension over the elements of ``mask``.

    Args:
        student, teacher: ``(B, M, D)``; the teacher is detached (gradients reach the student only).
        mask: ``(B, M)`` bool.

    Returns:
        A scalar in ``[-1, 1]`` (0 when ``mask`` is empty), float32.
    """
    cos = F.cosine_similarity(student.float(), teacher.detach().float(), dim=-1, eps=eps)  # (B, M)
    return torch.where(mask, cos, torch.zeros((), device=cos.device)).sum() / mask.sum().clamp(min=1).float()


def mimic_loss(pairs: list[tuple[Tensor, Tensor]], mask: Tensor) -> tuple[Tensor, list[Tensor]]:
    """:math:`L_{mimic}` over the samples of ``mask``: per path, one minus the mean cosine similarity (the
    mean of :math:`1 - \\cos` over :math:`B_m`), summed over paths.

    Args:
        pairs: one ``(student, teacher)`` pair of ``(B, M, D_p)`` tensors per path: dual-path mimicking has
            two (classification logits, regression features), the shared-feature ablation one.
        mask: ``(B, M)`` bool, the samples of :math:`B_m`.

    Returns:
        ``(loss, cosines)``: the scalar loss (0 when ``mask`` is empty) and each path's mean cosine similarity,
        detached, for logging.
    """
    cosines = [mean_cosine(s, t, mask) for s, t in pairs]
    has = (mask.sum() > 0).float()  # an empty B_m gives no loss (not 1 per path)
    return sum((1.0 - c) * has for c in cosines), [c.detach() for c in cosines]
