"""Box coders: how a regression head's outputs become boxes, and back.

Two parametrisations cover the dense detectors in minidet:

* :class:`DeltaXYWHCoder` for anchors (R-CNN family, RetinaNet, ATSS-anchor, Libra R-CNN);
* :class:`LTRBCoder` for points (FCOS, Dual Weighting): distances from a point to the four sides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class DeltaXYWHCoder:
    """The R-CNN box parametrisation (Girshick et al. 2014, Eq. 1-4 of Faster R-CNN):

    .. math::
        t_x = \\frac{x - x_a}{w_a},\\quad t_y = \\frac{y - y_a}{h_a},\\quad
        t_w = \\log\\frac{w}{w_a},\\quad t_h = \\log\\frac{h}{h_a}

    each multiplied by ``weights`` (torchvision uses (1, 1, 1, 1) for RetinaNet and (10, 10, 5, 5)
    for the R-CNN box head). ``clamp`` bounds ``t_w, t_h`` when decoding so ``exp`` cannot overflow.
    """

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    clamp: float = math.log(1000.0 / 16)

    def encode(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        """``anchors``, ``boxes``: ``(..., 4)`` xyxy, broadcastable. Returns ``(..., 4)`` deltas."""
        wx, wy, ww, wh = self.weights
        aw = anchors[..., 2] - anchors[..., 0]
        ah = anchors[..., 3] - anchors[..., 1]
        ax = anchors[..., 0] + 0.5 * aw
        ay = anchors[..., 1] + 0.5 * ah
        bw = (boxes[..., 2] - boxes[..., 0]).clamp(min=1e-6)
        bh = (boxes[..., 3] - boxes[..., 1]).clamp(min=1e-6)
        bx = boxes[..., 0] + 0.5 * bw
        by = boxes[..., 1] + 0.5 * bh
        return torch.stack(
            [wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)], dim=-1
        )

    def decode(self, anchors: Tensor, deltas: Tensor) -> Tensor:
        """Inverse of :meth:`encode`. ``anchors``, ``deltas``: ``(..., 4)``. Returns xyxy ``(..., 4)``."""
        wx, wy, ww, wh = self.weights
        aw = anchors[..., 2] - anchors[..., 0]
        ah = anchors[..., 3] - anchors[..., 1]
        ax = anchors[..., 0] + 0.5 * aw
        ay = anchors[..., 1] + 0.5 * ah
        dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.clamp)
        cx, cy = ax + dx * aw, ay + dy * ah
        w, h = aw * torch.exp(dw), ah * torch.exp(dh)
        return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


@dataclass
class LTRBCoder:
    """Distances from a point to the left, top, right and bottom sides of a box (FCOS, Eq. 1):

    .. math:: l = x - x_1,\\quad t = y - y_1,\\quad r = x_2 - x,\\quad b = y_2 - y

    With ``normalize=True`` the distances are divided by the level's stride (as FCOS's
    ``norm_reg_targets``), so every level regresses numbers of the same magnitude.
    """

    normalize: bool = True

    def encode(self, points: Tensor, boxes: Tensor, strides: Tensor | None = None) -> Tensor:
        """``points`` ``(..., 2)`` xy, ``boxes`` ``(..., 4)`` xyxy, ``strides`` ``(...)``. Returns ``(..., 4)``."""
        x, y = points[..., 0], points[..., 1]
        d = torch.stack([x - boxes[..., 0], y - boxes[..., 1], boxes[..., 2] - x, boxes[..., 3] - y], dim=-1)
        if self.normalize and strides is not None:
            d = d / strides[..., None]
        return d

    def decode(self, points: Tensor, distances: Tensor, strides: Tensor | None = None) -> Tensor:
        """Inverse of :meth:`encode`. Returns xyxy ``(..., 4)``."""
        if self.normalize and strides is not None:
            distances = distances * strides[..., None]
        x, y = points[..., 0], points[..., 1]
        return torch.stack(
            [x - distances[..., 0], y - distances[..., 1], x + distances[..., 2], y + distances[..., 3]], dim=-1
        )
