"""The box and quality losses FCOS and ATSS share (FCOS, Tian et al. 2019, Sec. 3.3 and the authors'
improved code; ATSS, Zhang et al. 2020, Sec. 4): GIoU weighted by the centerness target, and binary
cross-entropy on the centerness logit."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from minidet.boxes.centerness import centerness_target
from minidet.distributed import loss_normalizer
from minidet.losses.levels import sum_per_level
from minidet.losses.regression import giou_loss


def centerness_weighted_losses(
    pred_boxes: Tensor, gt_boxes: Tensor, centres: Tensor, ctr_logits: Tensor, pos: Tensor,
    levels: Tensor, num_levels: int, num_pos: Tensor,
) -> tuple[Tensor, Tensor]:
    """Per-level parts of the box loss and of the centerness loss:

    .. math::
        \\mathcal{L}_{box} = \\frac{\\sum_{i \\in pos} c^*_i\\, (1 - \\mathrm{GIoU}(\\hat b_i, b^*_i))}{\\sum_{i \\in pos} c^*_i},
        \\qquad
        \\mathcal{L}_{ctr} = \\frac{1}{N_{pos}} \\sum_{i \\in pos} \\mathrm{BCE}(\\hat c_i, c^*_i)

    with :math:`c^*_i` the centerness target (FCOS Eq. 3) of the element's centre in its ground truth.
    The centerness sum is pooled over processes and only kept away from 0 (the authors' code;
    mmdetection clamps it to at least 1).

    Args:
        pred_boxes: ``(B, A, 4)`` decoded xyxy predictions.
        gt_boxes: ``(B, A, 4)`` matched ground truths; at non-positives any finite, non-degenerate box
            (a padding box of zeros could give NaN gradients through GIoU even where masked).
        centres: ``(A, 2)`` anchor centres or points.
        ctr_logits: ``(B, A)`` centerness logits.
        pos: ``(B, A)`` bool positives; ``levels``: ``(A,)``; ``num_levels``: ``L``.
        num_pos: scalar normaliser of the centerness loss (e.g. :meth:`DenseDetector.num_positives`).

    Returns:
        ``(L,)`` box parts and ``(L,)`` centerness parts; each sums to its loss.
    """
    ctr_target = torch.where(pos, centerness_target(centres[None], gt_boxes), 0.0)  # (B, A)
    giou = torch.where(pos, giou_loss(pred_boxes.float(), gt_boxes) * ctr_target, 0.0)
    box_levels = sum_per_level(giou, levels, num_levels) / loss_normalizer(ctr_target.sum(), 1e-6)
    bce = F.binary_cross_entropy_with_logits(ctr_logits.float(), ctr_target, reduction="none")
    return box_levels, sum_per_level(torch.where(pos, bce, 0.0), levels, num_levels) / num_pos
