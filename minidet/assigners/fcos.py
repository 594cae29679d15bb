"""FCOS assignment of points to ground truths (Tian et al., "FCOS: Fully Convolutional One-Stage Object
Detection", ICCV 2019, Sec. 3.1-3.2, with the centre sampling of the authors' later code).

https://arxiv.org/abs/1904.01355

A point ``(x, y)`` of level ``l`` with stride ``s_l`` is a positive of ground truth ``g`` when

1. it lies inside ``g``: the regression targets of Eq. (1) are all positive,

   .. math:: l^* = x - x_1,\\quad t^* = y - y_1,\\quad r^* = x_2 - x,\\quad b^* = y_2 - y;

2. (centre sampling) it lies within ``radius x s_l`` of the centre of ``g``, in the sub-box
   ``[c_x - r s_l, c_y - r s_l, c_x + r s_l, c_y + r s_l]`` clipped to ``g`` (radius 1.5 in the authors'
   code, mmdetection and torchvision);
3. (Sec. 3.2, multi-level prediction) its level is in charge of ``g``'s size:
   :math:`m_{l-1} \\le \\max(l^*, t^*, r^*, b^*) \\le m_l`, with ``(m_{l-1}, m_l)`` the level's scale range
   (both ends included, as mmdetection).

A point that several ground truths claim goes to the one of smallest area ("the ambiguous sample
belongs to the smaller box", Sec. 3.2); ties go to the lower index. Every other point is negative.

Batched over images and ground truths (padded and masked), without a Python loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from minidet.assigners.chunks import anchor_tiles, gt_chunks, merge_best
from minidet.assigners.max_iou import AssignResult

INF = math.inf
# Sec. 3.2: m_2..m_7 = 0, 64, 128, 256, 512, inf for P3-P7 on ~800 px COCO images (-1 keeps a 0 inside).
FCOS_RANGES: tuple[tuple[float, float], ...] = ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF))


def scaled_ranges(factor: float, ranges: tuple[tuple[float, float], ...] = FCOS_RANGES) -> tuple[tuple[float, float], ...]:
    """Scale ranges for images ``factor`` times the size FCOS was tuned for (~800 px): every finite bound
    other than the open ``-1`` is multiplied, e.g. ``scaled_ranges(0.5)`` ->
    ``((-1, 32), (32, 64), (64, 128), (128, 256), (256, inf))`` for 256-400 px images."""
    return tuple((lo if lo < 0 else lo * factor, hi if math.isinf(hi) else hi * factor) for lo, hi in ranges)


def ltrb_targets(points: Tensor, gt_boxes: Tensor) -> Tensor:
    """Eq. (1) of FCOS for every point and ground truth of a batch.

    Args:
        points: ``(A, 2)`` xy; ``gt_boxes``: ``(B, G, 4)`` xyxy.

    Returns:
        ``(B, A, G, 4)`` distances ``(l, t, r, b)`` in pixels; all positive iff the point is inside.
    """
    p = points[None, :, None]  # (1, A, 1, 2)
    g = gt_boxes[:, None]  # (B, 1, G, 4)
    return torch.cat([p - g[..., :2], g[..., 2:] - p], dim=-1)


@dataclass
class FCOSAssigner:
    """FCOS assignment with per-level ``scale_ranges`` and centre sampling.

    Args:
        scale_ranges: ``(m_{l-1}, m_l)`` of each level, finest first (:data:`FCOS_RANGES`; see
            :func:`scaled_ranges` for smaller images).
        center_sampling_radius: ``r`` in strides; ``None`` or 0 gives the paper's "anywhere in the box".
        gt_chunk: ground truths compared at once (default: as many as
            :data:`~minidet.assigners.chunks.MAX_PAIRS` allows; same result either way).
        tile: compare the points a cache-sized tile at a time (:func:`~minidet.assigners.chunks.anchor_tiles`;
            ``None``: on a CPU only, where it is faster; the same result either way).
    """

    scale_ranges: tuple[tuple[float, float], ...] = FCOS_RANGES
    center_sampling_radius: float | None = 1.5
    gt_chunk: int | None = None
    tile: bool | None = None
    _ranges: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def ranges(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``(L, 2)`` scale ranges on ``device``, cached: a host-to-device copy in every step would wait."""
        key = (tuple(map(tuple, self.scale_ranges)), str(device), dtype)
        if key not in self._ranges:
            self._ranges[key] = torch.tensor(self.scale_ranges, dtype=dtype, device=device)
        return self._ranges[key]

    @torch.no_grad()
    def assign(self, points: Tensor, strides: Tensor, level_index: Tensor, gt_boxes: Tensor, gt_valid: Tensor
               ) -> AssignResult:
        """Assign a batch.

        Args:
            points: ``(A, 2)`` xy points of all levels, concatenated (see :class:`~minidet.models.PointGenerator`).
            strides: ``(A,)`` stride of each point.
            level_index: ``(A,)`` int64 level of each point (indexes ``scale_ranges``, one range per level:
                :class:`~minidet.models.FCOS` checks the counts when it is built).
            gt_boxes: ``(B, G, 4)`` padded ground-truth boxes.
            gt_valid: ``(B, G)`` bool, ``False`` on padding.

        Returns:
            An :class:`AssignResult` with ``neg == ~pos``; ``max_iou`` is 0 (a point has no box to overlap).
        """
        ranges = self.ranges(points.device, points.dtype)[level_index]  # (A, 2) the range of each point's level
        tiled = points.device.type == "cpu" if self.tile is None else self.tile
        best = None
        for sl in gt_chunks(gt_boxes.shape[1], gt_boxes.shape[0] * points.shape[0], self.gt_chunk):
            boxes, valid = gt_boxes[:, sl], gt_valid[:, sl]
            area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # (B, g)
            # padding claims nothing: an infinite area never wins the smallest-area vote, and "claimed at all" is
            # "smallest claimed area < inf" (one reduction for the vote and the positives)
            area = torch.where(valid, area, INF)
            tiles = (anchor_tiles(points.shape[0], boxes.shape[0] * boxes.shape[1]) if tiled
                     else [slice(0, points.shape[0])])
            parts = [self._smallest_claim(points[ts], strides[ts], ranges[ts], boxes, area) for ts in tiles]
            chunk = (torch.cat([v for v, _ in parts], 1), torch.cat([i for _, i in parts], 1))
            best = merge_best(best, *chunk, sl.start, largest=False)
        pos = best[0] < INF
        return AssignResult(matched_gt=best[1], pos=pos, neg=~pos, max_iou=torch.zeros_like(best[0]))

    def _smallest_claim(self, points: Tensor, strides: Tensor, ranges: Tensor, boxes: Tensor, area: Tensor
                        ) -> tuple[Tensor, Tensor]:
        """For ``a`` points and the ``g`` boxes of a chunk: the smallest area among the boxes that claim each
        point (inf if none) and its index, ``(B, a)`` each.

        One coordinate at a time in ``(B, a, g)`` maps (no ``(B, a, g, 4)`` stack reduced over its short last
        axis): "inside" is ``x1 < x < x2`` and ``y1 < y < y2`` (Eq. 1's targets positive), the centre sub-box is
        ``c - r s < p < c + r s`` on both axes (with "inside" the same as the clipped sub-box), and the level's
        range bounds ``max(l, t, r, b)``. Comparisons of the same floating-point values as Eq. 1's differences
        (``p - x1 > 0`` exactly when ``p > x1``): the same assignment, bit for bit."""
        px, py = points[None, :, None, 0], points[None, :, None, 1]  # (1, a, 1)
        x1, y1, x2, y2 = (boxes[:, None, :, k] for k in range(4))  # (B, 1, g)
        ok = (px > x1) & (py > y1) & (x2 > px) & (y2 > py)  # (B, a, g)
        if self.center_sampling_radius:
            r = (self.center_sampling_radius * strides)[None, :, None]  # (1, a, 1)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            ok &= (px > cx - r) & (px < cx + r) & (py > cy - r) & (py < cy + r)
        reach = torch.maximum(torch.maximum(px - x1, py - y1), torch.maximum(x2 - px, y2 - py))
        ok &= (reach >= ranges[None, :, None, 0]) & (reach <= ranges[None, :, None, 1])
        claimed = torch.where(ok, area[:, None], INF)  # (B, a, g)
        return claimed.min(dim=2)  # smallest area wins; ties go to the first (lower) index
