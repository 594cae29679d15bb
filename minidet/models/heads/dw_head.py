"""Dual Weighting head (Li et al., CVPR 2022, Sec. 3 and the authors' ``DWHead``): FCOS's towers, an
objectness branch on the regression tower instead of centerness, and optional box refinement."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minidet.models.heads.atss_head import ATSSHead
from minidet.models.heads.box_refine import refine_distances
from minidet.models.heads.retina_head import flatten_level


class DWHead(ATSSHead):
    """Classification tower -> logits ``(C)``; regression tower -> distances ``(4)``, objectness ``(1)``
    and, with ``refine``, eight offsets that move where each box coordinate is re-sampled
    (:func:`~minidet.models.heads.box_refine.refine_distances`).

    The score of class ``c`` at a point is :math:`s = \\sigma(\\mathrm{cls}_c)\\,\\sigma(\\mathrm{obj})`;
    the objectness conv is the ``centerness`` conv inherited from :class:`ATSSHead` (the authors' code
    calls it ``conv_centerness`` too), but it learns from the dual-weighted losses, not a centerness target.

    Distances are ``max(0, scale_l * conv(tower))`` in stride units. Initialisation as the authors':
    classification prior ``pi = 0.02``, distance bias 4 (every point starts with a box of 8 x 8 strides,
    away from ReLU's dead zone), all other convs ``N(0, 0.01)`` with zero bias.

    Args:
        in_channels, num_classes, num_levels, num_convs, norm: see :class:`ATSSHead`.
        prior_prob: ``pi`` (0.02).
        refine: add the box-refinement offsets (the authors' ``reg_refine``, on by default).
    """

    def __init__(self, in_channels: int, num_classes: int, num_levels: int = 5, num_convs: int = 4,
                 prior_prob: float = 0.02, norm: str | None = "gn", refine: bool = True) -> None:
        super().__init__(in_channels, num_classes, 1, num_levels, num_convs, prior_prob, norm)
        nn.init.constant_(self.box_pred.bias, 4.0)
        self.refine = refine
        self.refine_offsets = nn.Conv2d(in_channels, 8, 3, padding=1) if refine else None
        if self.refine_offsets is not None:
            nn.init.normal_(self.refine_offsets.weight, std=0.01)
            nn.init.zeros_(self.refine_offsets.bias)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``feats``: FPN levels ``(B, C_in, H_l, W_l)``.

        Returns:
            ``cls_logits`` ``(B, N, C)``, ``distances`` ``(B, N, 4)`` (refined if ``refine``; ``>= 0``,
            stride units, float32) and ``objectness`` logits ``(B, N)``, ``N = sum_l H_l W_l``.
        """
        if len(feats) != len(self.scales):
            raise ValueError(f"DWHead has {len(self.scales)} level scales, got {len(feats)} feature maps")
        cls, box, obj = [], [], []
        for f, scale in zip(feats, self.scales):
            c, r = self.cls_tower(f), self.box_tower(f)
            dist = F.relu(scale(self.box_pred(r)).float())  # (B, 4, H, W); float32 for the sampling
            if self.refine_offsets is not None:
                dist = refine_distances(dist, self.refine_offsets(r).float())
            cls.append(flatten_level(self.cls_logits(c), self.num_classes))
            box.append(flatten_level(dist, 4))
            obj.append(flatten_level(self.centerness(r), 1))
        return torch.cat(cls, dim=1), torch.cat(box, dim=1), torch.cat(obj, dim=1).squeeze(-1)
