"""Box refinement of Dual Weighting (Li et al., "A Dual Weighting Label Assignment Scheme for Object
Detection", CVPR 2022, Sec. 3, "Box Refinement"; the authors' ``DWHead.forward_single``).

https://arxiv.org/abs/2203.09730

A point predicts a coarse box from its own receptive field, but the evidence for where the left edge
lies is near the left edge. So every point reads each of the four coordinates of its refined box from
the coarse-box map at a location near the corresponding side of its own coarse box:

.. math::
    \\hat x_1(p) = X_1\\big(p + (\\Delta^{x_1}_x - l,\\ \\Delta^{x_1}_y)\\big),\\quad
    \\hat y_1(p) = Y_1\\big(p + (\\Delta^{y_1}_x,\\ \\Delta^{y_1}_y - t)\\big),

.. math::
    \\hat x_2(p) = X_2\\big(p + (\\Delta^{x_2}_x + r,\\ \\Delta^{x_2}_y)\\big),\\quad
    \\hat y_2(p) = Y_2\\big(p + (\\Delta^{y_2}_x,\\ \\Delta^{y_2}_y + b)\\big)

where ``X_1, Y_1, X_2, Y_2`` are the channels of the map of decoded coarse boxes, ``(l, t, r, b)`` the
point's coarse distances and the eight ``Delta`` are learned offsets (a 3x3 conv on the regression
tower). The sampling is bilinear, zero outside the map: exactly a deformable 1x1 convolution with one
offset group per channel and a weight of ones (:func:`torchvision.ops.deform_conv2d`). The refined
box goes back to distances from the point (clamped at 0).

Everything here is in units of the level's stride, with the point of cell ``(i, j)`` at
``(j + 0.5, i + 0.5)``: the construction is linear, so it equals the authors' pixel version divided by
the stride, and needs no stride at all.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import deform_conv2d


def cell_centres(height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` of every cell centre in stride units, each ``(1, H, W)``."""
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return x[None], y[None]


def edge_offsets(learned: Tensor, distances: Tensor) -> Tensor:
    """The deformable-conv offsets that put each coordinate's sample near its side of the coarse box.

    Args:
        learned: ``(B, 8, H, W)`` learned offsets, ``(dy, dx)`` for ``x_1, y_1, x_2, y_2`` in turn.
        distances: ``(B, 4, H, W)`` coarse ``(l, t, r, b)`` in stride units.

    Returns:
        ``(B, 8, H, W)`` offsets in :func:`~torchvision.ops.deform_conv2d`'s layout (per offset group
        ``(dy, dx)``): ``x_1`` is read ``l`` to the left, ``y_1`` ``t`` above, ``x_2`` ``r`` to the right,
        ``y_2`` ``b`` below, each moved by its learned offset.
    """
    l, t, r, b = distances.unbind(1)
    o = learned.unbind(1)
    return torch.stack([o[0], o[1] - l, o[2] - t, o[3], o[4], o[5] + r, o[6] + b, o[7]], dim=1)


def sample_edges(boxes: Tensor, offsets: Tensor) -> Tensor:
    """Channel ``c`` of ``boxes`` read at ``(y + offsets[2c], x + offsets[2c+1])`` for every cell ``(y, x)``.

    A deformable 1x1 convolution with four groups (one channel each) and a weight of ones: bilinear
    sampling, zero outside the map.

    Args:
        boxes: ``(B, 4, H, W)`` map to sample (float32 or float64).
        offsets: ``(B, 8, H, W)`` in cells.

    Returns:
        ``(B, 4, H, W)``.
    """
    weight = boxes.new_ones(boxes.shape[1], 1, 1, 1)  # (out, in / groups, 1, 1): groups = channels
    return deform_conv2d(boxes, offsets, weight)


def refine_distances(distances: Tensor, learned: Tensor) -> Tensor:
    """Refined ``(l, t, r, b)``: decode the coarse boxes, re-sample each coordinate near its own side
    (:func:`edge_offsets`, :func:`sample_edges`), encode again, clamp at 0.

    Args:
        distances: ``(B, 4, H, W)`` coarse distances in stride units (``>= 0``).
        learned: ``(B, 8, H, W)`` learned offsets in cells.

    Returns:
        ``(B, 4, H, W)`` refined distances in stride units. Gradients reach both inputs.
    """
    x, y = cell_centres(distances.shape[2], distances.shape[3], distances.device, distances.dtype)
    l, t, r, b = distances.unbind(1)
    boxes = torch.stack([x - l, y - t, x + r, y + b], dim=1)  # (B, 4, H, W) coarse boxes, stride units
    s = sample_edges(boxes, edge_offsets(learned, distances))
    return F.relu(torch.stack([x - s[:, 0], y - s[:, 1], s[:, 2] - x, s[:, 3] - y], dim=1))
