"""Region Proposal Network head (Faster R-CNN, Ren et al. 2015, Sec. 3.1, Fig. 3), shared by all FPN levels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minidet.models.heads.retina_head import flatten_level


class RPNHead(nn.Module):
    """A 3x3 conv + ReLU, then sibling 1x1 convs: one objectness logit and four box deltas per anchor.

    Args:
        channels: input (and hidden) channels; num_anchors: anchors per cell ``A``.

    ``forward(feats)`` -> ``objectness`` ``(B, N)`` and ``deltas`` ``(B, N, 4)`` over the concatenated
    levels, in the anchor generator's ``(level, y, x, anchor)`` order.
    """

    def __init__(self, channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)
        for m in (self.conv, self.objectness, self.deltas):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, feats: list[Tensor]) -> tuple[Tensor, Tensor]:
        obj, deltas = [], []
        for x in feats:
            x = F.relu(self.conv(x))
            obj.append(flatten_level(self.objectness(x), 1)[..., 0])
            deltas.append(flatten_level(self.deltas(x), 4))
        return torch.cat(obj, dim=1), torch.cat(deltas, dim=1)
