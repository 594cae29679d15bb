"""The R-CNN box head of Faster R-CNN with FPN (Lin et al. 2017, Sec. 4.2): RoIAlign 7x7 on the level
chosen by the RoI's size, two fully connected layers, then a softmax classifier over ``C + 1`` classes
(background last) and class-specific box deltas."""
from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import MultiScaleRoIAlign


class RoIBoxHead(nn.Module):
    """``torchvision.ops.MultiScaleRoIAlign`` (7x7, level :math:`k = \\lfloor 4 + \\log_2(\\sqrt{wh}/224) \\rfloor`,
    FPN Eq. 1, clamped to the given levels) + 2 x (fc, ReLU) + sibling fc layers.

    Args:
        channels: channels of the pyramid; num_classes: ``C`` (object classes, without background).
        num_levels: how many of the finest pyramid levels the RoIs are pooled from (P2-P5: 4).
        roi_size: 7; sampling_ratio: RoIAlign samples per bin side (torchvision: 2); fc_dim: 1024 in the paper.

    ``forward(feats, rois, image_size)`` with ``feats`` finest first and ``rois`` ``(B, S, 4)`` returns
    ``cls_logits`` ``(B, S, C + 1)``, ``deltas`` ``(B, S, C, 4)`` and the ``(B, S, fc_dim)`` representation.
    """

    def __init__(self, channels: int, num_classes: int, num_levels: int = 4, roi_size: int = 7, sampling_ratio: int = 2,
                 fc_dim: int = 1024) -> None:
        super().__init__()
        self.names = [f"level{i}" for i in range(num_levels)]  # keys of MultiScaleRoIAlign, finest first
        self.pool = MultiScaleRoIAlign(self.names, roi_size, sampling_ratio)
        self.fc = nn.Sequential(nn.Flatten(1), nn.Linear(channels * roi_size * roi_size, fc_dim), nn.ReLU(inplace=True),
                                nn.Linear(fc_dim, fc_dim), nn.ReLU(inplace=True))
        self.cls = nn.Linear(fc_dim, num_classes + 1)
        self.box = nn.Linear(fc_dim, num_classes * 4)
        self.num_classes = num_classes
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.normal_(self.box.weight, std=0.001)
        nn.init.zeros_(self.cls.bias)
        nn.init.zeros_(self.box.bias)

    def forward(self, feats: list[Tensor], rois: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        b, s, _ = rois.shape
        fmap = OrderedDict(zip(self.names, feats))
        pooled = self.pool(fmap, list(rois.float().unbind(0)), [tuple(image_size)] * b)  # (B*S, C, 7, 7)
        x = self.fc(pooled)
        return self.cls(x).view(b, s, -1), self.box(x).view(b, s, self.num_classes, 4), x.view(b, s, -1)
