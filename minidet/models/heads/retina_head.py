"""RetinaNet head (Lin et al. 2017, Sec. 4, Fig. 3): two towers shared by all pyramid levels."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def conv_tower(channels: int, num_convs: int, norm: str | None, conv_bias: bool | None = None) -> nn.Sequential:
    """``num_convs`` x (3x3 conv, optional GroupNorm(32), ReLU), as in the RetinaNet/FCOS/ATSS heads.

    ``conv_bias``: whether the convs have a bias; ``None`` (default) gives them one only without a norm
    (a norm's shift makes it redundant). torchvision's FCOS head keeps the bias before GroupNorm, so
    loading its weights needs ``conv_bias=True``."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(channels, channels, 3, padding=1, bias=norm is None if conv_bias is None else conv_bias))
        if norm == "gn":
            layers.append(nn.GroupNorm(min(32, channels // 4), channels))
        elif norm is not None:
            raise ValueError(f"norm must be None or 'gn', got {norm!r}")
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def init_dense_head(head: nn.Module, cls_logits: nn.Conv2d, prior_prob: float) -> None:
    """RetinaNet's initialisation (Sec. 4, "Initialization"): every conv ``N(0, 0.01)`` with zero bias, and
    the classification bias ``-log((1 - pi) / pi)`` so every anchor starts at background probability
    ``1 - pi`` and the many easy negatives do not swamp the first iterations."""
    for m in head.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    nn.init.constant_(cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))


def flatten_level(x: Tensor, k: int) -> Tensor:
    """``(B, A*k, H, W)`` -> ``(B, H*W*A, k)``: the ``(y, x, anchor)`` order of the anchor generator."""
    b, _, h, w = x.shape
    return x.view(b, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, k)


class RetinaHead(nn.Module):
    """Classification and box subnets applied to every level with shared weights.

    The last classification conv's bias is ``-log((1 - pi) / pi)`` with prior ``pi = 0.01`` (Sec. 4,
    "Initialization"), so that at the start every anchor predicts background with confidence 0.99 and
    the many easy negatives do not swamp the first iterations.

    Args:
        in_channels: FPN channels.
        num_classes: ``C`` (no background class: sigmoid per class).
        num_anchors: anchors per cell ``A``.
        num_convs: depth of each tower (4 in the paper).
        norm: ``None`` (paper) or ``"gn"``.
        conv_bias: tower convs with a bias (default: only without a norm), see :func:`conv_tower`.
    """

    def __init__(self, in_channels: int, num_classes: int, num_anchors: int, num_convs: int = 4, prior_prob: float = 0.01,
                 norm: str | None = None, conv_bias: bool | None = None) -> None:
        super().__init__()
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.cls_tower = conv_tower(in_channels, num_convs, norm, conv_bias)
        self.box_tower = conv_tower(in_channels, num_convs, norm, conv_bias)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        init_dense_head(self, self.cls_logits, prior_prob)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``feats``: FPN levels ``(B, C_in, H_l, W_l)``.

        Returns:
            ``cls_logits`` ``(B, sum_l H_l W_l A, num_classes)`` and ``box_deltas`` ``(B, sum_l H_l W_l A, 4)``.
        """
        cls = [flatten_level(self.cls_logits(self.cls_tower(f)), self.num_classes) for f in feats]
        box = [flatten_level(self.box_pred(self.box_tower(f)), 4) for f in feats]
        return torch.cat(cls, dim=1), torch.cat(box, dim=1)
