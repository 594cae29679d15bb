"""RoIAlign on a level chosen per box, for heads whose level rule is not FPN's size rule.

Faster R-CNN pools each RoI from the level its *size* picks (FPN Eq. 1), which
:class:`torchvision.ops.MultiScaleRoIAlign` implements. MimicDet's T-head instead pools a box from the
level one finer than the level its *anchor* came from (the staggered feature pyramid, MimicDet Sec. 3):
the level is an input, not a function of the box. :func:`level_roi_align` takes it explicitly and calls
:func:`torchvision.ops.roi_align` once per level.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align


def level_roi_align(feats: list[Tensor], rois: Tensor, levels: Tensor, strides: tuple[int, ...] | list[int],
                    output_size: int = 7, sampling_ratio: int = 2, aligned: bool = False) -> Tensor:
    """Pool every RoI from its own pyramid level.

    .. math:: \\mathrm{out}_{b,s} = \\mathrm{RoIAlign}\\big(P_{\\ell_{b,s}},\\ r_{b,s} / s_{\\ell_{b,s}}\\big)

    Args:
        feats: ``L`` maps ``(B, C, H_l, W_l)``, finest first.
        rois: ``(B, S, 4)`` xyxy boxes in input-image pixels.
        levels: ``(B, S)`` int64 index into ``feats`` of each RoI.
        strides: ``L`` strides in pixels (the RoIs are scaled by ``1 / stride``).
        output_size, sampling_ratio, aligned: as :func:`torchvision.ops.roi_align` (``aligned=False`` as
            :class:`~torchvision.ops.MultiScaleRoIAlign`, so the two agree on the same levels).

    Returns:
        ``(B, S, C, output_size, output_size)`` in the features' dtype.

    RoIs and their batch indices stay in float32 whatever the features' dtype: in bf16 (8 significant
    bits) a coordinate between 512 and 1024 moves in steps of 4 pixels and a batch index above 256 is no
    longer exact. Lower-precision features are pooled in float32 (as torchvision's autocast wrapper of
    ``roi_align`` does) and the result is cast back.
    """
    if len(feats) != len(strides):
        raise ValueError(f"level_roi_align: {len(feats)} feature maps but {len(strides)} strides")
    b, s, _ = rois.shape
    flat_rois = rois.reshape(-1, 4).float()
    flat_levels = levels.reshape(-1)
    batch_idx = torch.arange(b, device=rois.device, dtype=torch.float32).repeat_interleave(s)[:, None]
    boxes = torch.cat([batch_idx, flat_rois], dim=1)  # (B*S, 5): roi_align's (batch index, x1, y1, x2, y2)
    out = feats[0].new_zeros(b * s, feats[0].shape[1], output_size, output_size)
    for lvl, (f, stride) in enumerate(zip(feats, strides)):
        idx = (flat_levels == lvl).nonzero().squeeze(1)
        out[idx] = roi_align(f.float(), boxes[idx], output_size, 1.0 / stride, sampling_ratio, aligned).to(out.dtype)
    return out.view(b, s, -1, output_size, output_size)


def nearest_size_level(boxes: Tensor, base_size: float, num_levels: int) -> Tensor:
    """The level whose anchor size is nearest (in log scale) to each box's size, for boxes without an anchor.

    With one anchor of side ``base_size * 2^l`` on level ``l``:

    .. math:: \\ell = \\mathrm{clamp}\\big(\\mathrm{round}(\\log_2(\\sqrt{wh} / \\text{base\\_size})),\\ 0,\\ L - 1\\big)

    Args:
        boxes: ``(..., 4)`` xyxy; base_size: anchor side on level 0 in pixels; num_levels: ``L``.

    Returns:
        ``(...)`` int64 levels.
    """
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-6)
    side = torch.sqrt(wh[..., 0] * wh[..., 1])
    return torch.round(torch.log2(side / base_size)).clamp(0, num_levels - 1).long()

