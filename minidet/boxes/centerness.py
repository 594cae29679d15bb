"""Centerness (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019, Eq. 3),
the quality target of the FCOS and ATSS centerness branches."""
from __future__ import annotations

import torch
from torch import Tensor


def centerness_target(points: Tensor, boxes: Tensor) -> Tensor:
    """How central each point is in its box, Eq. (3) of FCOS:

    .. math:: \\mathrm{centerness} = \\sqrt{\\frac{\\min(l, r)}{\\max(l, r)} \\cdot \\frac{\\min(t, b)}{\\max(t, b)}}

    with ``l, t, r, b`` the distances from the point to the box's sides: 1 at the centre, 0 on a side.
    ATSS uses the anchor centres as points.

    Args:
        points: ``(..., 2)`` xy.
        boxes: ``(..., 4)`` xyxy, broadcastable with ``points``.

    Returns:
        ``(...)`` in ``[0, 1]``; points outside their box (only meaningful for positives) give 0, not NaN.
    """
    d = torch.cat([points - boxes[..., :2], boxes[..., 2:] - points], dim=-1).clamp(min=0)  # l, t, r, b
    lr, tb = d[..., 0::2], d[..., 1::2]
    ratio = lr.min(-1).values / lr.max(-1).values.clamp(min=1e-12) * tb.min(-1).values / tb.max(-1).values.clamp(min=1e-12)
    return torch.sqrt(ratio)
