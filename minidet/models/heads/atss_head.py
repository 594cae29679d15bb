"""ATSS head (Zhang et al., CVPR 2020, Sec. 4 and the authors' code): RetinaNet's two towers with
GroupNorm, one anchor per cell, plus a centerness branch on the box tower (from FCOS, Tian et al. 2019,
Eq. 3) and a learnable scale per pyramid level on the box deltas."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from minidet.models.heads.retina_head import RetinaHead, flatten_level


class Scale(nn.Module):
    """A learnable scalar multiplying its input (FCOS, Sec. 3.3): the levels share the head's weights but
    regress targets of different typical magnitude, so each level gets its own factor, initialised to 1."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class ATSSHead(RetinaHead):
    """RetinaNet's head (classification tower -> logits ``(A*C)``, box tower -> deltas ``(A*4)``) with a
    per-level :class:`Scale` on the deltas and centerness logits ``(A*1)`` from the box tower.

    Initialised as RetinaNet's head (:func:`~minidet.models.heads.retina_head.init_dense_head`, prior
    ``pi``); GroupNorm by default.

    Args:
        in_channels: FPN channels.
        num_classes: ``C``.
        num_anchors: anchors per cell ``A`` (1 for ATSS).
        num_levels: pyramid levels (one :class:`Scale` each).
        num_convs: depth of each tower (4 in the paper).
        prior_prob: ``pi`` (0.01).
        norm: ``"gn"`` (paper) or ``None``.
        conv_bias: tower convs with a bias (default: only without a norm), see
            :func:`~minidet.models.heads.conv_tower`.
    """

    def __init__(self, in_channels: int, num_classes: int, num_anchors: int = 1, num_levels: int = 5,
                 num_convs: int = 4, prior_prob: float = 0.01, norm: str | None = "gn", conv_bias: bool | None = None) -> None:
        super().__init__(in_channels, num_classes, num_anchors, num_convs, prior_prob, norm, conv_bias)
        self.centerness = nn.Conv2d(in_channels, num_anchors, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels))
        nn.init.normal_(self.centerness.weight, std=0.01)  # the rest was initialised by RetinaHead
        nn.init.zeros_(self.centerness.bias)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``feats``: FPN levels ``(B, C_in, H_l, W_l)``, as many as ``num_levels``.

        Returns:
            ``cls_logits`` ``(B, N, C)``, ``box_deltas`` ``(B, N, 4)`` and ``centerness`` logits ``(B, N)``
            with ``N = sum_l H_l W_l A``, in the anchor generator's ``(level, y, x, anchor)`` order.
        """
        if len(feats) != len(self.scales):
            raise ValueError(f"ATSSHead has {len(self.scales)} level scales, got {len(feats)} feature maps")
        cls, box, ctr = [], [], []
        for f, scale in zip(feats, self.scales):
            c, r = self.cls_tower(f), self.box_tower(f)
            cls.append(flatten_level(self.cls_logits(c), self.num_classes))
            box.append(flatten_level(scale(self.box_pred(r)), 4))
            ctr.append(flatten_level(self.centerness(r), 1))
        return torch.cat(cls, dim=1), torch.cat(box, dim=1), torch.cat(ctr, dim=1).squeeze(-1)
