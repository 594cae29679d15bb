"""The guided deformable convolution of MimicDet's S-head (Lu et al., ECCV 2020, Sec. 3; no public code
exists, this follows the paper's description).

A deformable convolution (Dai et al., ICCV 2017, Eq. 2) reads its input at learned positions:

.. math:: y(p) = \\sum_{i,j} w_{ij}\\, x\\big(p + q_{ij} + \\Delta_{ij}(p)\\big), \\qquad
          q_{ij} = (i - \\lfloor k/2 \\rfloor,\\ j - \\lfloor k/2 \\rfloor)

with :math:`x(\\cdot)` bilinear, zero outside the map. In MimicDet the offsets :math:`\\Delta(p)` are not
learned from the features but computed by a micro-network from the refinement module's regression output
at :math:`p` (the refined box's shift and scale), so the kernel follows the refined anchor.

Two implementations of the same function: :func:`torchvision.ops.deform_conv2d` (used on CUDA), and
:func:`deform_conv2d_sampled`, which samples the ``k^2`` shifted inputs with :func:`torch.nn.functional.grid_sample`
and mixes them with a 1x1 convolution (used on CPU: torchvision's CPU backward is about 7x slower on the
lesson's shapes, single-threaded). The tests check that they agree, values and gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

BACKENDS = ("auto", "torchvision", "grid_sample")


def sampling_points(offsets: Tensor, kernel_size: int) -> Tensor:
    """Where a ``k x k`` deformable conv (stride 1, padding ``k // 2``, dilation 1) reads, in input cells.

    .. math:: p_{ij}(y, x) = (y - \\lfloor k/2 \\rfloor + i + \\Delta y_{ij},\\ x - \\lfloor k/2 \\rfloor + j + \\Delta x_{ij})

    Args:
        offsets: ``(B, 2 k^2, H, W)`` in torchvision's layout (``(dy, dx)`` for kernel position ``i k + j``).

    Returns:
        ``(B, H, W, k^2, 2)`` sampling points as ``(x, y)`` in cells (multiply by the stride for pixels).
    """
    b, _, h, w = offsets.shape
    k, r = kernel_size, kernel_size // 2
    dev, dt = offsets.device, offsets.dtype
    off = offsets.view(b, k * k, 2, h, w).permute(0, 3, 4, 1, 2)  # (B, H, W, k^2, (dy, dx))
    ki = torch.arange(k, device=dev, dtype=dt).repeat_interleave(k)  # kernel row of position i k + j
    kj = torch.arange(k, device=dev, dtype=dt).repeat(k)  # kernel column
    ys = torch.arange(h, device=dev, dtype=dt)[:, None, None]
    xs = torch.arange(w, device=dev, dtype=dt)[None, :, None]
    return torch.stack([xs - r + kj + off[..., 1], ys - r + ki + off[..., 0]], dim=-1)


def deform_conv2d_sampled(x: Tensor, offsets: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:func:`torchvision.ops.deform_conv2d` with stride 1, padding ``k // 2``, one offset group, computed as
    bilinear sampling (:func:`~torch.nn.functional.grid_sample`, zeros outside) of the ``k^2`` shifted
    inputs followed by a 1x1 convolution.

    Args:
        x: ``(B, C, H, W)``; offsets: ``(B, 2 k^2, H, W)`` (``(dy, dx)`` per kernel position, in cells);
        weight: ``(O, C, k, k)``; bias: ``(O,)``.

    Returns:
        ``(B, O, H, W)``.
    """
    b, c, h, w = x.shape
    k = weight.shape[-1]
    pts = sampling_points(offsets.to(x.dtype), k)  # (B, H, W, k^2, 2) in cells
    # grid_sample's normalised coordinates with align_corners=False: cell i is centred at (2 i + 1) / size - 1
    scale = torch.tensor([w, h], device=x.device, dtype=x.dtype)
    grid = (2 * pts + 1) / scale - 1
    grid = grid.permute(0, 3, 1, 2, 4).reshape(b, k * k * h, w, 2)  # the k^2 shifted maps stacked along H
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, k^2 H, W)
    sampled = sampled.view(b, c * k * k, h, w)  # channel-major, then kernel position: weight.view(O, C k^2)'s order
    return F.conv2d(sampled, weight.reshape(weight.shape[0], -1, 1, 1), bias)


class OffsetNet(nn.Module):
    """The micro-network: three 1x1 convs (hidden widths 64 and 128, ReLU) from the ``4`` refinement deltas
    of a location to the ``2 k^2`` offsets ``(dy, dx)`` of a ``k x k`` deformable conv, in cells.

    The last conv starts at zero (minidet's choice, the usual deformable-conv initialisation): the guided
    conv begins as a plain conv and learns to follow the refined boxes.
    """

    def __init__(self, kernel_size: int, in_channels: int = 4, hidden: tuple[int, int] = (64, 128)) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden[0], 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden[0], hidden[1], 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden[1], 2 * kernel_size * kernel_size, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, deltas: Tensor) -> Tensor:
        """``deltas`` ``(B, 4, H, W)`` -> offsets ``(B, 2 k^2, H, W)`` (torchvision's ``(dy, dx)`` layout)."""
        return self.net(deltas)


class GuidedDeformConv(nn.Module):
    """A ``k x k`` deformable conv (padding ``k // 2``) whose offsets come from :class:`OffsetNet` applied to
    the refinement deltas.

    ``backend``: ``"torchvision"`` (:func:`~torchvision.ops.deform_conv2d`), ``"grid_sample"``
    (:func:`deform_conv2d_sampled`) or ``"auto"``: torchvision's op on CUDA, the sampled form elsewhere.
    With all offsets zero it is exactly ``F.conv2d(x, weight, bias, padding=k // 2)`` (tested).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, backend: str = "auto") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.kernel_size, self.backend = kernel_size, backend
        self.offset_net = OffsetNet(kernel_size)
        conv = nn.Conv2d(in_channels, out_channels, kernel_size)  # holds the weight; initialised as a conv
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, C_in, H, W)``, ``deltas`` ``(B, 4, H, W)`` -> ``(out (B, C_out, H, W), offsets)``."""
        offsets = self.offset_net(deltas.to(x.dtype))
        if self.backend == "torchvision" or (self.backend == "auto" and x.is_cuda):
            out = deform_conv2d(x, offsets, self.weight, self.bias, padding=self.kernel_size // 2)
        else:
            out = deform_conv2d_sampled(x, offsets, self.weight.to(x.dtype), self.bias.to(x.dtype))
        return out, offsets
