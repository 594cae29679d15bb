"""Points on every pyramid level: the "anchors" of anchor-free detectors (FCOS, Sec. 3.1; Dual Weighting).

A feature cell ``(x, y)`` of a level with stride ``s`` looks at the input-image location

.. math:: \\big(\\lfloor s/2 \\rfloor + x s,\\ \\lfloor s/2 \\rfloor + y s\\big) \\qquad \\text{(FCOS, Sec. 3.1)}

here written ``((x + 0.5) s, (y + 0.5) s)`` (the same for even strides), as in mmdetection's point
generators and the Dual Weighting code. A point is the centre of its cell, not its top-left corner.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class PointGenerator(nn.Module):
    """Generates the ``(x, y)`` centres of every feature cell for a list of feature-map sizes.

    Ordering is ``(level, y, x)``, flattened: the order of :class:`~minidet.models.AnchorGenerator` with one
    anchor per cell, and of the heads' :func:`~minidet.models.heads.flatten_level`. Points for a given set of
    sizes are cached per device, so they are built once per input size.

    Args:
        strides: stride of each level in pixels, e.g. ``(8, 16, 32, 64, 128)``.
        offset: points at ``(x + offset) * stride``; 0.5 (cell centres).
    """

    def __init__(self, strides: tuple[int, ...] = (8, 16, 32, 64, 128), offset: float = 0.5) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.offset = offset
        self._cache: dict[tuple, Any] = {}

    @property
    def num_anchors(self) -> int:
        """One point per feature cell (lets code written for anchors ask the same question)."""
        return 1

    def forward(self, feature_sizes: list[tuple[int, int]], device: torch.device | str = "cpu") -> list[Tensor]:
        """Points of every level.

        Args:
            feature_sizes: ``(H_l, W_l)`` of each level's feature map.

        Returns:
            A list with one ``(H_l * W_l, 2)`` float32 tensor of ``(x, y)`` per level.
        """
        key = (tuple(map(tuple, feature_sizes)), str(device))
        if key not in self._cache:
            out = []
            for (h, w), stride in zip(feature_sizes, self.strides):
                ys = (torch.arange(h, dtype=torch.float32) + self.offset) * stride
                xs = (torch.arange(w, dtype=torch.float32) + self.offset) * stride
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                out.append(torch.stack([cx, cy], dim=-1).reshape(-1, 2).to(device))
            self._cache[key] = out
        return self._cache[key]

    def point_strides(self, level_sizes: list[int], device: torch.device | str = "cpu") -> Tensor:
        """``(A,)`` float32 stride of every point, ``A = sum(level_sizes)``, in the same order."""
        strides = torch.tensor(self.strides[: len(level_sizes)], dtype=torch.float32, device=device)
        return torch.repeat_interleave(strides, torch.tensor(level_sizes, device=device))

    def grid(self, feature_sizes: list[tuple[int, int]], device: torch.device | str = "cpu"
             ) -> tuple[Tensor, Tensor, list[int]]:
        """All levels at once: points ``(A, 2)``, their strides ``(A,)`` and the points per level (cached
        like the per-level points, so a training step builds nothing)."""
        key = ("grid", tuple(map(tuple, feature_sizes)), str(device))
        if key not in self._cache:
            points = self(feature_sizes, device)
            level_sizes = [len(p) for p in points]
            self._cache[key] = (torch.cat(points), self.point_strides(level_sizes, device), level_sizes)
        return self._cache[key]

    def extra_repr(self) -> str:
        return f"strides={self.strides}, offset={self.offset}"


def point_cells(points: Tensor, strides: Tensor) -> Tensor:
    """``(A, 4)`` xyxy one-stride cell centred on each point ``(A, 2)`` with stride ``(A,)``: the box a point
    stands for where a box is needed (crowd-region overlap, a finite placeholder regression target)."""
    return torch.cat([points - strides[:, None] / 2, points + strides[:, None] / 2], dim=-1)
