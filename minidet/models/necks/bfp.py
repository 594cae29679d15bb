"""Balanced Feature Pyramid (Libra R-CNN, Pang et al., CVPR 2019, Sec. 3.2).

https://arxiv.org/abs/1904.02701

FPN's top-down path mixes levels sequentially, so each level sees mostly its neighbours. The Balanced
Feature Pyramid gives every level the same integrated feature, in four steps:

1. *Rescale*: resize every level :math:`C_l` to the size of the refine level (max-pooling for finer
   levels, nearest interpolation for coarser ones).
2. *Integrate* (Eq. 2): :math:`C = \\frac{1}{L} \\sum_{l=l_{min}}^{l_{max}} C_l`.
3. *Refine*: an embedded-Gaussian non-local block (Wang et al., CVPR 2018) or a 3x3 conv.
4. *Strengthen*: resize the refined feature back to each level (the reverse ops) and add it as a residual.

It takes the outputs of an FPN and returns maps of the same shapes, so it fits after FPN in any
detector (:class:`BalancedFPN`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


BFP_INITS = ("mmdetection", "libra")


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al., "Non-local Neural Networks", Eq. 1-3):

    .. math:: y_i = \\sum_j \\mathrm{softmax}_j\\big(\\theta(x_i)^\\top \\phi(x_j)\\big)\\, g(x_j), \\qquad z_i = x_i + W_z y_i

    with 1x1 convs :math:`\\theta, \\phi, g` (``channels // reduction`` channels). Initialisation as
    mmcv's ``NonLocal2d``: :math:`\\theta, \\phi, g` normal with std 0.01, and :math:`W_z` zero
    (``zero_init_out=True``), so the block starts as the identity. ``use_scale`` divides the logits by
    :math:`\\sqrt{d}` (Libra R-CNN: off). :class:`BalancedFPN` may re-initialise it (``init="libra"``).
    """

    def __init__(self, channels: int, reduction: int = 1, use_scale: bool = False, zero_init_out: bool = True) -> None:
        super().__init__()
        inter = max(1, channels // reduction)
        self.theta, self.phi, self.g = (nn.Conv2d(channels, inter, 1) for _ in range(3))
        self.out = nn.Conv2d(inter, channels, 1)
        self.use_scale = use_scale
        for m in (self.theta, self.phi, self.g):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        if zero_init_out:
            nn.init.zeros_(self.out.weight)
        else:
            nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def attention(self, x: Tensor) -> Tensor:
        """``(B, HW, HW)`` weights: row ``i`` is how much position ``i`` reads from every position ``j``."""
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, HW, d)
        phi = self.phi(x).flatten(2)  # (B, d, HW)
        logits = theta @ phi
        if self.use_scale:
            logits = logits / theta.shape[-1] ** 0.5
        return logits.softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)  # (B, HW, d)
        y = (self.attention(x) @ g).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.out(y)


def gather_to(x: Tensor, size: tuple[int, int], finer: bool) -> Tensor:
    """Resize ``x`` to ``size``: adaptive max-pooling when ``x`` is finer, nearest interpolation otherwise."""
    return F.adaptive_max_pool2d(x, size) if finer else F.interpolate(x, size=size, mode="nearest")


class BalancedFPN(nn.Module):
    """Rescale, integrate, refine, strengthen (Sec. 3.2) on top of a neck's outputs.

    Args:
        neck: the FPN whose outputs are balanced (its ``strides`` and ``out_channels`` are kept).
        refine_level: index of the level everything is resized to (Libra R-CNN: 2, i.e. P4 of P2-P6).
        refine: ``"non_local"`` (the paper's choice), ``"conv"`` (a 3x3 conv) or ``None`` (no refinement).
        init: where the two reference codebases differ. ``"mmdetection"`` (default; mmdetection 2.x once its
            BFP is a ``BaseModule`` with an ``init_cfg``, and 3.x): Xavier-uniform convs, after which the
            non-local block re-initialises itself (:class:`NonLocal2d`: output conv zero, so it starts as
            the identity). ``"libra"`` (the ``OceanPang/Libra_R-CNN`` repository, whose ``BFP.init_weights``
            runs after the block's own): every conv of the BFP Xavier-uniform, the non-local block's output
            conv included, so the block does not start as the identity. Biases are 0 in both. The default
            keeps the identity start, which lets a BFP be added to a trained FPN without changing its output.

    ``forward`` returns ``(outputs, integrated, refined)`` when called through :meth:`balance`, for plots.
    """

    def __init__(self, neck: nn.Module, refine_level: int = 2, refine: str | None = "non_local",
                 init: str = "mmdetection") -> None:
        super().__init__()
        if refine not in ("non_local", "conv", None):
            raise ValueError(f"refine must be 'non_local', 'conv' or None, got {refine!r}")
        if init not in BFP_INITS:
            raise ValueError(f"init must be one of {BFP_INITS}, got {init!r}")
        self.neck = neck
        self.refine_level = refine_level
        ch = neck.out_channels
        self.refine_kind = refine
        if refine == "non_local":
            self.refine = NonLocal2d(ch)
        elif refine == "conv":
            self.refine = nn.Conv2d(ch, ch, 3, padding=1)
        else:
            self.refine = nn.Identity()
        self.init = init
        for m in self.refine.modules():
            # "libra": Xavier on every conv; "mmdetection": Xavier, then the non-local block keeps its own init
            if isinstance(m, nn.Conv2d) and (init == "libra" or refine == "conv"):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def strides(self) -> tuple[int, ...]:
        return self.neck.strides

    @property
    def out_channels(self) -> int:
        return self.neck.out_channels

    def balance(self, levels: list[Tensor]) -> tuple[list[Tensor], Tensor, Tensor]:
        """``levels``: ``L`` maps ``(B, C, H_l, W_l)``, finest first. Returns the strengthened maps, the
        integrated feature (Eq. 2) and the refined one, both ``(B, C, H_r, W_r)`` at the refine level."""
        if not 0 <= self.refine_level < len(levels):
            raise ValueError(f"refine_level {self.refine_level} outside the {len(levels)} levels")
        size = tuple(levels[self.refine_level].shape[-2:])
        integrated = torch.stack([gather_to(x, size, i < self.refine_level) for i, x in enumerate(levels)]).mean(0)
        refined = self.refine(integrated)
        outs = [x + gather_to(refined, tuple(x.shape[-2:]), i >= self.refine_level) for i, x in enumerate(levels)]
        return outs, integrated, refined

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        return self.balance(self.neck(feats))[0]
