"""Box regression losses: smooth L1, L1 and GIoU.

These are thin, documented wrappers over PyTorch/torchvision so each detector can name its loss;
Balanced L1 (Libra R-CNN) lives in its own file.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from minidet.losses.reduction import reduce_loss


def smooth_l1_loss(pred: Tensor, target: Tensor, beta: float = 1.0 / 9, reduction: str = "none") -> Tensor:
    """Smooth L1 (Huber-like) loss of Fast R-CNN, Eq. (3):

    .. math:: \\mathrm{smooth}_{L_1}(x) = \\begin{cases} 0.5 x^2 / \\beta & |x| < \\beta \\\\ |x| - 0.5 \\beta & \\text{otherwise} \\end{cases}

    ``beta = 1/9`` is Detectron's RetinaNet setting. ``pred``, ``target``: ``(..., 4)`` deltas.
    """
    return F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction)


def l1_loss(pred: Tensor, target: Tensor, reduction: str = "none") -> Tensor:
    """Plain L1 loss :math:`|x|` (torchvision's RetinaNet uses it on box deltas)."""
    return F.l1_loss(pred, target, reduction=reduction)


def giou_loss(pred_boxes: Tensor, target_boxes: Tensor, reduction: str = "none") -> Tensor:
    """Generalized IoU loss (Rezatofighi et al., CVPR 2019, Alg. 1): :math:`1 - \\mathrm{GIoU}`.

    .. math:: \\mathrm{GIoU} = \\mathrm{IoU} - \\frac{|C \\setminus (A \\cup B)|}{|C|}

    with ``C`` the smallest box enclosing both. ``pred_boxes``, ``target_boxes``: ``(..., 4)`` xyxy,
    returns ``(...)``. Computed by :func:`torchvision.ops.generalized_box_iou_loss`.
    """
    shape = pred_boxes.shape[:-1]
    loss = generalized_box_iou_loss(pred_boxes.reshape(-1, 4), target_boxes.reshape(-1, 4), reduction="none")
    return reduce_loss(loss.reshape(shape), reduction)
