"""MimicDet's S-head (student): a one-stage head whose features are aligned to the refined anchors
(Lu et al., "MimicDet: Bridging the Gap Between One-Stage and Two-Stage Object Detection", ECCV 2020,
Sec. 3, the S-head).

https://arxiv.org/abs/2009.11528 — no public code exists; this follows the paper's description, and
every choice the paper leaves open is marked "minidet's choice".

A one-stage head reads a fixed 3x3 window around each anchor's centre whatever the anchor's refined
shape; a two-stage head pools features inside the box (RoIAlign). The S-head closes that gap with a
*guided* deformable convolution: a micro-network turns the refinement module's regression output
``(t_x, t_y, t_w, t_h)`` of each location into the sampling offsets of a ``k x k`` deformable conv
(``k = 5``, 3 on P3), so the conv reads where the refined box lies. Sibling 1x1 convs then give a
classification feature (ReLU) and a regression feature (no ReLU, as the T-head's: see
:class:`~minidet.models.heads.THead`), 1024-d in the paper, and 1x1 convs the predictions: ``C + 1``
softmax logits (background last) and 4 box deltas relative to the refined anchor.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from minidet.models.heads.guided_deform import GuidedDeformConv
from minidet.models.heads.retina_head import flatten_level


@dataclass
class HeadOutput:
    """What the S-head and the T-head return, per element (anchor or RoI).

    Attributes:
        cls_logits: ``(B, N, C + 1)`` softmax logits, background last.
        deltas: ``(B, N, 4)`` box deltas relative to the refined anchor or the RoI.
        feature: ``(B, N, D)`` the regression feature (``D`` = 1024 in the paper), or the one shared
            feature of both tasks when the head is built with ``shared=True``; ``None`` when not asked for.
    """

    cls_logits: Tensor
    deltas: Tensor
    feature: Tensor | None = None


class SHead(nn.Module):
    """Guided deformable conv (+ optional GroupNorm) and ReLU, sibling 1x1 feature convs (classification with
    ReLU, regression without), 1x1 predictors; shared by P3-P7 except that P3 has its own 3x3 deformable conv (the paper's 3x3 on P3; the
    5x5 one serves P4-P7).

    Args:
        in_channels: FPN channels; conv_channels: output of the deformable conv (256 in the paper).
        num_classes: ``C``; feat_dim: ``D`` (1024 in the paper).
        kernel_size: 5; small_kernel_size: 3 (P3).
        shared: one feature for both tasks instead of two (the ablation of dual-path mimicking).
        norm: ``None`` (paper) or ``"gn"``: GroupNorm after the deformable conv (minidet's tiny configuration,
            as its other tiny heads, keeps the small from-scratch network's ReLUs alive).

    ``forward(feats, deltas, with_feature)`` -> :class:`HeadOutput` over the concatenated levels, in the
    anchor generator's ``(level, y, x)`` order (one anchor per location).
    """

    def __init__(self, in_channels: int, num_classes: int, conv_channels: int = 256, feat_dim: int = 1024,
                 kernel_size: int = 5, small_kernel_size: int = 3, shared: bool = False, norm: str | None = None) -> None:
        super().__init__()
        self.num_classes, self.shared = num_classes, shared
        self.dconv_p3 = GuidedDeformConv(in_channels, conv_channels, small_kernel_size)
        self.dconv = GuidedDeformConv(in_channels, conv_channels, kernel_size)
        if norm not in (None, "gn"):
            raise ValueError(f"norm must be None or 'gn', got {norm!r}")
        self.norm = nn.GroupNorm(min(32, conv_channels // 4), conv_channels) if norm == "gn" else nn.Identity()
        self.cls_feat = nn.Sequential(nn.Conv2d(conv_channels, feat_dim, 1), nn.ReLU(inplace=True))
        self.reg_feat = None if shared else nn.Conv2d(conv_channels, feat_dim, 1)
        self.cls_logits = nn.Conv2d(feat_dim, num_classes + 1, 1)
        self.box_pred = nn.Conv2d(feat_dim, 4, 1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.normal_(self.box_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_logits.bias)
        nn.init.zeros_(self.box_pred.bias)

    def deform(self, level: int, x: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
        """The guided deformable conv of S-head level ``level`` (0 = P3), norm and ReLU: ``(features, offsets)``."""
        out, offsets = (self.dconv_p3 if level == 0 else self.dconv)(x, deltas)
        return torch.relu(self.norm(out)), offsets

    def forward(self, feats: list[Tensor], deltas: list[Tensor], with_feature: bool = True) -> HeadOutput:
        """``feats``: P3-P7 maps ``(B, C, H_l, W_l)``; ``deltas``: the refinement deltas of each level as maps
        ``(B, 4, H_l, W_l)`` (detached by the caller). ``with_feature=False`` (inference) skips flattening
        the ``D``-dimensional features."""
        cls, box, feat = [], [], []
        for lvl, (x, d) in enumerate(zip(feats, deltas)):
            x, _ = self.deform(lvl, x, d)
            fc = self.cls_feat(x)
            fr = fc if self.reg_feat is None else self.reg_feat(x)
            cls.append(flatten_level(self.cls_logits(fc), self.num_classes + 1))
            box.append(flatten_level(self.box_pred(fr), 4))
            if with_feature:
                feat.append(flatten_level(fr, fr.shape[1]))
        return HeadOutput(torch.cat(cls, 1), torch.cat(box, 1), torch.cat(feat, 1) if with_feature else None)

