"""Anchor boxes on every pyramid level (RetinaNet, Sec. 4 "Anchors").

Each level ``l`` with stride ``s_l`` places ``len(ratios) * scales_per_octave`` anchors at every
feature cell. Their sizes are ``octave_base_scale * s_l * 2^{k / scales_per_octave}`` for
``k = 0 .. scales_per_octave - 1``: RetinaNet uses base scale 4, 3 scales per octave and ratios
``{1:2, 1:1, 2:1}`` (9 anchors per cell, 32 to 813 pixels on P3-P7).
"""
from __future__ import annotations


import torch
from torch import Tensor, nn


class AnchorGenerator(nn.Module):
    """Generates xyxy anchors for a list of feature-map sizes.

    Ordering is ``(level, y, x, anchor)``, flattened, which matches how dense heads flatten their
    ``(B, A*C, H, W)`` outputs; within a cell anchors go ratio-major, scale-minor (as torchvision).
    Anchors for a given set of sizes are cached per device, so they are built once per input size.

    Args:
        strides: stride of each level in pixels, e.g. ``(8, 16, 32, 64, 128)``.
        octave_base_scale: anchor side relative to the stride at ``k = 0``.
        scales_per_octave: number of intermediate scales.
        ratios: height / width ratios.
        center_offset: anchor centres at ``(x + center_offset) * stride``; 0 as torchvision and mmdetection.
    """

    def __init__(
        self,
        strides: tuple[int, ...] = (8, 16, 32, 64, 128),
        octave_base_scale: float = 4.0,
        scales_per_octave: int = 3,
        ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        center_offset: float = 0.0,
    ) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.octave_base_scale = octave_base_scale
        self.scales_per_octave = scales_per_octave
        self.ratios = tuple(ratios)
        self.center_offset = center_offset
        self._cache: dict[tuple, list[Tensor]] = {}

    @property
    def num_anchors(self) -> int:
        """Anchors per feature cell."""
        return len(self.ratios) * self.scales_per_octave

    def base_anchors(self, stride: int) -> Tensor:
        """``(num_anchors, 4)`` anchors centred at the origin for one level."""
        scales = torch.tensor(
            [self.octave_base_scale * stride * 2 ** (k / self.scales_per_octave) for k in range(self.scales_per_octave)]
        )
        h_ratios = torch.sqrt(torch.tensor(self.ratios))
        w_ratios = 1.0 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, feature_sizes: list[tuple[int, int]], device: torch.device | str = "cpu") -> list[Tensor]:
        """Anchors of every level.

        Args:
            feature_sizes: ``(H_l, W_l)`` of each level's feature map.

        Returns:
            A list with one ``(H_l * W_l * num_anchors, 4)`` float32 tensor per level.
        """
        key = (tuple(map(tuple, feature_sizes)), str(device))
        if key not in self._cache:
            out = []
            for (h, w), stride in zip(feature_sizes, self.strides):
                ys = (torch.arange(h, dtype=torch.float32) + self.center_offset) * stride
                xs = (torch.arange(w, dtype=torch.float32) + self.center_offset) * stride
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                shifts = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
                out.append((shifts + self.base_anchors(stride)[None]).reshape(-1, 4).to(device))
            self._cache[key] = out
        return self._cache[key]

    def extra_repr(self) -> str:
        sizes = [round(self.octave_base_scale * s) for s in self.strides]
        return f"strides={self.strides}, base sizes={sizes}, octave scales={self.scales_per_octave}, ratios={self.ratios}"


def anchor_sizes(generator: AnchorGenerator) -> list[list[float]]:
    """Side lengths (sqrt of area) of the anchors of each level, for plots and lessons."""
    return [
        [generator.octave_base_scale * s * 2 ** (k / generator.scales_per_octave) for k in range(generator.scales_per_octave)]
        for s in generator.strides
    ]


