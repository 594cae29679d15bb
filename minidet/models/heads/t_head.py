"""MimicDet's T-head (teacher, training only): a two-stage R-CNN head on RoIAligned features
(Lu et al., ECCV 2020, Sec. 3, the T-head).

https://arxiv.org/abs/2009.11528 — no public code exists; this follows the paper's description.

For each sampled refined anchor the detector pools a 7x7 RoIAlign feature (from the level one finer than
the anchor's S-head level, :func:`minidet.models.roi.level_roi_align`). Two branches, as the paper's
decomposed head:

* classification: 2 x (fc-1024, ReLU), then fc to ``C + 1`` logits (softmax, background last);
* regression: 4 x (conv3x3-256, ReLU), flatten, fc to a 1024-d regression feature, fc to 4
  class-agnostic deltas. The regression feature has no ReLU (minidet's choice; the paper does not say):
  with one, AdamW kills every unit of the tiny network's regression feature within about 50 steps (measured;
  the feature only serves a 4-d L1 regression, and its 3136 non-negative inputs move together), which
  leaves the regression path nothing to mimic.

``shared=True`` is the ablation without decomposed paths: one 2 x fc branch gives a single feature
from which both predictions are made (and which the S-head then mimics as a whole).
"""
from __future__ import annotations

from torch import Tensor, nn

from minidet.models.heads.retina_head import conv_tower
from minidet.models.heads.s_head import HeadOutput


class THead(nn.Module):
    """Args:
        channels: channels of the pooled features (the FPN's; the regression convs keep them: 256 in the paper).
        num_classes: ``C``; roi_size: 7; fc_dim: 1024 in the paper; num_convs: 4 in the paper.
        shared: one shared feature for both tasks instead of the two branches.
        norm: ``None`` (paper) or ``"gn"``: GroupNorm in the regression convs (minidet's tiny configuration:
            without it the from-scratch tiny network's regression convs die, all ReLUs at zero, within a
            hundred AdamW steps, measured).

    ``forward(pooled)`` with ``pooled`` ``(B, S, C_in, 7, 7)`` -> :class:`HeadOutput` with ``(B, S, ...)`` tensors.
    """

    def __init__(self, channels: int, num_classes: int, roi_size: int = 7, fc_dim: int = 1024, num_convs: int = 4,
                 shared: bool = False, norm: str | None = None) -> None:
        super().__init__()
        self.shared = shared
        flat = channels * roi_size * roi_size
        self.cls_branch = nn.Sequential(nn.Flatten(1), nn.Linear(flat, fc_dim), nn.ReLU(inplace=True),
                                        nn.Linear(fc_dim, fc_dim), nn.ReLU(inplace=True))
        self.reg_branch = None if shared else nn.Sequential(
            conv_tower(channels, num_convs, norm=norm), nn.Flatten(1), nn.Linear(flat, fc_dim))
        self.cls = nn.Linear(fc_dim, num_classes + 1)
        self.box = nn.Linear(fc_dim, 4)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)

    def forward(self, pooled: Tensor) -> HeadOutput:
        b, s = pooled.shape[:2]
        x = pooled.flatten(0, 1)  # (B*S, C, 7, 7)
        fc = self.cls_branch(x)
        fr = fc if self.reg_branch is None else self.reg_branch(x)
        return HeadOutput(self.cls(fc).view(b, s, -1), self.box(fr).view(b, s, 4), fr.view(b, s, -1))
