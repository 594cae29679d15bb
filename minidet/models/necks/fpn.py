"""Feature Pyramid Network (Lin et al., CVPR 2017) with RetinaNet's extra levels P6-P7.

https://arxiv.org/abs/1612.03144
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class FPN(nn.Module):
    """Top-down pathway with lateral connections, then ``num_extra`` stride-2 convs on top.

    .. math:: P_i = \\mathrm{conv}_{3\\times3}\\big(\\mathrm{conv}_{1\\times1}(C_i) + \\mathrm{up}_2(M_{i+1})\\big)

    RetinaNet (Sec. 4) builds P6 with a 3x3 stride-2 conv and P7 with ReLU then another one. Their input
    is ``P5`` (``extra_source="p5"``, torchvision's choice when channels match) or ``C5`` (the paper).
    Faster R-CNN with FPN instead takes P6 as a stride-2 subsampling of P5 (``extra_source="pool"``,
    no parameters; FPN paper Sec. 4.1), used by the RPN only.

    Args:
        in_channels: channels of the input features, finest first (e.g. C3, C4, C5).
        in_strides: their strides, e.g. ``(8, 16, 32)``.
        out_channels: channels of every output level.
        num_extra: extra levels above the last input (2 gives P6, P7).
        extra_source: ``"p5"``, ``"c5"`` or ``"pool"``.

    Attributes:
        strides: stride of each output level, e.g. ``(8, 16, 32, 64, 128)``.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        in_strides: tuple[int, ...] = (8, 16, 32),
        out_channels: int = 256,
        num_extra: int = 2,
        extra_source: str = "p5",
    ) -> None:
        super().__init__()
        if extra_source not in ("p5", "c5", "pool"):
            raise ValueError(f"extra_source must be 'p5', 'c5' or 'pool', got {extra_source!r}")
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        self.extra_source = extra_source
        extra_in = out_channels if extra_source == "p5" else in_channels[-1]
        self.extra = nn.ModuleList(
            nn.MaxPool2d(1, stride=2) if extra_source == "pool"
            else nn.Conv2d(extra_in if i == 0 else out_channels, out_channels, 3, stride=2, padding=1)
            for i in range(num_extra)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)
        self.out_channels = out_channels
        self.strides = tuple(in_strides) + tuple(in_strides[-1] * 2 ** (i + 1) for i in range(num_extra))

    def forward(self, feats: list[Tensor], skip: int = 0) -> list[Tensor]:
        """``feats``: input maps, finest first. Returns ``len(feats) + num_extra`` maps ``(B, out_channels, H_l, W_l)``.

        ``skip``: the number of finest levels not computed (nor their inputs read; a level's output never
        depends on finer ones): MimicDet's inference leaves out P2. ``skip`` fewer maps are returned."""
        laterals = [lat(f) for lat, f in zip(self.lateral[skip:], feats[skip:])]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
        outs = [conv(x) for conv, x in zip(self.output[skip:], laterals)]
        x = feats[-1] if self.extra_source == "c5" else outs[-1]
        for i, conv in enumerate(self.extra):
            x = conv(x if i == 0 or self.extra_source == "pool" else F.relu(x))
            outs.append(x)
        return outs
