"""A small residual CNN that trains from scratch on a laptop CPU in minutes.

ResNet-18 at 256 px costs about 2.4 GFLOPs per image; this network costs a few hundred MFLOPs, which
is what makes a real detector trainable inside a lesson. Same interface as
:class:`minidet.models.backbones.resnet.ResNetBackbone`: a dict of features ``c2..c5`` at strides 4..32.
It starts from scratch, or from a state dict such as the one :mod:`minidet.models.backbones.pretrain`
writes (:data:`PRETRAINED_TINY`, ``--weights shapes-pretrained`` on the command line).
"""
from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from minidet.models.backbones.resnet import load_state_dict_checked, read_state_dict

# Where the pretrained tiny backbone ships (written by ``python -m minidet.models.backbones.pretrain``);
# ``weights="shapes-pretrained"`` names it in build_model, RunConfig.weights and ``minidet train --weights``.
PRETRAINED_TINY = Path(__file__).parent / "weights" / "tiny_shapes_cls.pt"
SHAPES_PRETRAINED = "shapes-pretrained"


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut (ResNet, Fig. 2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)  # each block starts as the identity: stable from-scratch training
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.bn2(self.conv2(self.conv1(x))))


class TinyBackbone(nn.Module):
    """Stem (stride 2) and four stages, each a strided 3x3 conv and ``depths[i]`` basic blocks.

    Args:
        widths: channels of the stem and of the stages at strides 4, 8, 16 and 32.
        depths: basic blocks per stage.
        weights_path: optional state dict of a ``TinyBackbone`` of the same widths and depths (fp16 or fp32;
            copied as fp32), every key and shape checked (:func:`load_state_dict_checked`).

    Attributes:
        out_channels: ``{"c2": ..., "c5": ...}`` channels per returned feature.
        strides: ``{"c2": 4, "c3": 8, "c4": 16, "c5": 32}``.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 32, 64, 128, 192), depths: tuple[int, ...] = (1, 1, 2, 1),
                 weights_path: str | Path | None = None) -> None:
        super().__init__()
        assert len(widths) == 5 and len(depths) == 4, "widths: stem + 4 stages; depths: 4 stages"
        self.stem = conv_bn_relu(3, widths[0], stride=2)
        self.stages = nn.ModuleList(
            nn.Sequential(conv_bn_relu(widths[i], widths[i + 1], stride=2), *[BasicBlock(widths[i + 1]) for _ in range(depths[i])])
            for i in range(4)
        )
        self.out_channels = {f"c{i + 2}": widths[i + 1] for i in range(4)}
        self.strides = {f"c{i + 2}": 2 ** (i + 2) for i in range(4)}
        if weights_path is not None:
            state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(weights_path).items()}
            load_state_dict_checked(self, state, str(weights_path))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``x``: ``(B, 3, H, W)`` normalised images. Returns ``{"c2": (B, C2, H/4, W/4), ..., "c5": (B, C5, H/32, W/32)}``."""
        x = self.stem(x)
        feats = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[f"c{i + 2}"] = x
        return feats
