"""Box operations that torchvision does not batch: IoU between padded batches, clipping to image sizes.

Boxes are ``(x1, y1, x2, y2)`` in pixels throughout minidet ("xyxy").
"""
from __future__ import annotations

import torch
from torch import Tensor


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU between every box of ``boxes1`` and every box of ``boxes2``, batched over images.

    .. math:: \\mathrm{IoU}(a, b) = \\frac{|a \\cap b|}{|a| + |b| - |a \\cap b|}

    The same quantity as :func:`torchvision.ops.box_iou` (the tests compare the two), but with a
    leading batch dimension so that a padded batch of ground truths is matched in one kernel.

    Args:
        boxes1: ``(B, N, 4)`` or ``(N, 4)`` xyxy boxes (e.g. anchors, shared by the batch).
        boxes2: ``(B, M, 4)`` xyxy boxes (e.g. ground truths padded to ``M``).

    Returns:
        ``(B, N, M)`` IoU. Degenerate (zero-area) pairs give 0, never NaN.
    """
    if boxes1.dim() == 2:
        boxes1 = boxes1.unsqueeze(0)
    area1 = (boxes1[..., 2] - boxes1[..., 0]).clamp(min=0) * (boxes1[..., 3] - boxes1[..., 1]).clamp(min=0)
    area2 = (boxes2[..., 2] - boxes2[..., 0]).clamp(min=0) * (boxes2[..., 3] - boxes2[..., 1]).clamp(min=0)
    # One coordinate at a time, every line writing a contiguous map (pairs of coordinates in a trailing axis
    # of 2 would make each line a strided read). The longer of N and M is the maps' inner axis, so that a
    # line runs over long rows: many anchors against few ground truths are computed as (B, M, N) and
    # returned as its transposed view.
    if boxes1.shape[-2] >= boxes2.shape[-2]:
        return _iou_rows(boxes2, boxes1, area2, area1).transpose(-1, -2)
    return _iou_rows(boxes1, boxes2, area1, area2)


def _iou_rows(rows: Tensor, cols: Tensor, area_rows: Tensor, area_cols: Tensor) -> Tensor:
    """IoU map ``(B, R, K)`` of ``rows (B | 1, R, 4)`` against ``cols (B | 1, K, 4)``, contiguous."""
    # each coordinate copied to its own contiguous vector first: a strided column would make every line a gather
    r = [rows[..., k].contiguous()[..., None] for k in range(4)]  # (B, R, 1)
    c = [cols[..., k].contiguous()[..., None, :] for k in range(4)]  # (B, 1, K)
    w = torch.minimum(r[2], c[2]).sub_(torch.maximum(r[0], c[0])).clamp_(min=0)
    h = torch.minimum(r[3], c[3]).sub_(torch.maximum(r[1], c[1])).clamp_(min=0)
    inter = w.mul_(h)
    union = (area_rows[..., :, None] + area_cols[..., None, :]).sub_(inter)
    return inter / union.clamp_(min=torch.finfo(union.dtype).eps)


def clip_boxes(boxes: Tensor, image_sizes: Tensor) -> Tensor:
    """Clip xyxy boxes to their image.

    Args:
        boxes: ``(B, N, 4)`` boxes.
        image_sizes: ``(B, 2)`` integer ``(H, W)`` of each image (un-padded).

    Returns:
        ``(B, N, 4)`` boxes with ``0 <= x <= W`` and ``0 <= y <= H``.
    """
    h = image_sizes[:, 0].to(boxes.dtype)[:, None]  # (B, 1)
    w = image_sizes[:, 1].to(boxes.dtype)[:, None]
    x1 = torch.minimum(boxes[..., 0].clamp(min=0), w)
    y1 = torch.minimum(boxes[..., 1].clamp(min=0), h)
    x2 = torch.minimum(boxes[..., 2].clamp(min=0), w)
    y2 = torch.minimum(boxes[..., 3].clamp(min=0), h)
    return torch.stack([x1, y1, x2, y2], dim=-1)


def rescale_boxes(boxes: Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> Tensor:
    """Map xyxy boxes from an image of size ``from_size`` ``(H, W)`` to the same image resized to
    ``to_size`` ``(H', W')``: :math:`x' = x \\cdot W'/W`, :math:`y' = y \\cdot H'/H`.

    The eval transform resizes an image of ``(H0, W0)`` to ``(H, W)`` (aspect kept, sides rounded), so
    detections on the resized input go back to the file's pixels with ``rescale_boxes(b, (H, W), (H0, W0))``;
    each axis has its own factor, which absorbs the rounding.

    Args:
        boxes: ``(..., 4)`` xyxy boxes.

    Returns:
        ``(..., 4)`` boxes in the same dtype and device.
    """
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    return boxes * boxes.new_tensor([sx, sy, sx, sy])


def pad_targets(targets: list[dict[str, Tensor]], device: torch.device | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Stack per-image ground truths into padded batch tensors.

    Images with no objects are fine: their rows are all padding, so every anchor becomes negative.

    Args:
        targets: list of ``B`` dicts with ``boxes`` ``(N_i, 4)`` float and ``labels`` ``(N_i,)`` int64.

    Returns:
        ``boxes`` ``(B, G, 4)`` (zeros where padded), ``labels`` ``(B, G)`` (``-1`` where padded) and
        ``valid`` ``(B, G)`` bool, with ``G = max(1, max_i N_i)``.
    """
    device = device if device is not None else targets[0]["boxes"].device
    num = [len(t["labels"]) for t in targets]
    g = max(1, max(num, default=0))
    boxes = torch.zeros(len(targets), g, 4, device=device)
    labels = torch.full((len(targets), g), -1, dtype=torch.long, device=device)
    for i, t in enumerate(targets):
        boxes[i, : num[i]] = t["boxes"].to(device=device, dtype=boxes.dtype)
        labels[i, : num[i]] = t["labels"].to(device)
    return boxes, labels, labels >= 0
