"""Adaptive Training Sample Selection (Zhang et al., "Bridging the Gap Between Anchor-based and
Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020, Sec. 3.3 and Alg. 1).

https://arxiv.org/abs/1912.02424

Instead of a fixed IoU threshold, every ground truth ``g`` sets its own from the statistics of its
candidates ``C_g`` (the ``k`` anchors of each pyramid level whose centres are closest to the centre of
``g``):

.. math::
    t_g = m_g + v_g,\\qquad m_g = \\mathrm{mean}_{a \\in C_g} \\mathrm{IoU}(a, g),\\qquad
    v_g = \\mathrm{std}_{a \\in C_g} \\mathrm{IoU}(a, g)

A candidate with ``IoU >= t_g`` whose centre lies inside ``g`` is a positive of ``g``; an anchor that
several ground truths claim goes to the one it overlaps most; every other anchor is negative (ATSS has
no ignored anchors). ``std`` is the unbiased estimate (``torch.std``'s default), as in the authors'
code and mmdetection; "inside" means at least ``eps = 0.01`` pixels from every side, as in both.

**IoU convention.** The authors' code (``sfzhang15/ATSS``, ``atss_core/structures/boxlist_ops.py``,
``boxlist_iou``, from maskrcnn-benchmark) measures boxes in the +1-pixel convention: width ``x2 - x1 + 1``,
intersection ``rb - lt + 1`` (``TO_REMOVE = 1``), so an anchor's IoU with a ground truth, and hence the
threshold ``t_g``, is slightly higher than in continuous coordinates, most for small boxes. minidet, like
mmdetection and torchvision, uses continuous coordinates (width ``x2 - x1``). The two agree as boxes grow;
minidet offers no +1 variant.

Batched over images and ground truths (padded and masked); the only loops are over pyramid levels and,
for crowded images, over chunks of ground truths (:mod:`minidet.assigners.chunks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from minidet.assigners.chunks import gt_chunks, merge_best
from minidet.assigners.max_iou import AssignResult
from minidet.boxes.ops import batched_box_iou


def box_centers(boxes: Tensor) -> Tensor:
    """``(..., 4)`` xyxy -> ``(..., 2)`` centres."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2


@dataclass
class ATSSAssigner:
    """ATSS with ``topk`` candidates per level and per ground truth (9 in the paper).

    The authors' code takes ``topk x anchors-per-cell`` candidates per level; ATSS uses one anchor per
    cell, where the two agree. Here ``topk`` counts anchors, as in mmdetection. ``gt_chunk``: ground truths
    handled at once (default: as many as :data:`~minidet.assigners.chunks.MAX_PAIRS` allows; same result).
    """

    topk: int = 9
    eps: float = 0.01
    gt_chunk: int | None = None

    @torch.no_grad()
    def assign(self, anchors: Tensor, level_sizes: list[int], gt_boxes: Tensor, gt_valid: Tensor) -> AssignResult:
        """Assign a batch.

        Args:
            anchors: ``(A, 4)`` xyxy anchors of all levels, concatenated, shared by the batch.
            level_sizes: anchors per level (``sum == A``), finest first.
            gt_boxes: ``(B, G, 4)`` padded ground-truth boxes.
            gt_valid: ``(B, G)`` bool, ``False`` on padding.

        Returns:
            An :class:`AssignResult` with ``neg == ~pos``; ``max_iou`` is the IoU with the best valid
            ground truth (``-1`` for images without objects).
        """
        best, pos, max_iou = None, None, None
        for sl in gt_chunks(gt_boxes.shape[1], gt_boxes.shape[0] * anchors.shape[0], self.gt_chunk):
            iou, pos_of_gt = self._positives_of_each_gt(anchors, level_sizes, gt_boxes[:, sl], gt_valid[:, sl])
            claimed = iou.masked_fill(~pos_of_gt, -1.0)
            best = merge_best(best, *claimed.max(dim=2), sl.start)  # several claims: the highest IoU wins
            claims = pos_of_gt.any(dim=2)
            pos = claims if pos is None else pos | claims
            top = iou.masked_fill(~gt_valid[:, None, sl], -1.0).max(dim=2).values
            max_iou = top if max_iou is None else torch.maximum(max_iou, top)
        return AssignResult(matched_gt=best[1], pos=pos, neg=~pos, max_iou=max_iou)

    def _positives_of_each_gt(self, anchors: Tensor, level_sizes: list[int], gt_boxes: Tensor, gt_valid: Tensor
                              ) -> tuple[Tensor, Tensor]:
        """IoU ``(B, A, g)`` and the ATSS positives of each ground truth ``(B, A, g)`` bool, before
        anchors claimed by several ground truths are resolved (everything here is per ground truth)."""
        iou = batched_box_iou(anchors, gt_boxes)  # (B, A, g)
        dist = torch.linalg.vector_norm(box_centers(anchors)[None, :, None] - box_centers(gt_boxes)[:, None], dim=-1)

        candidates, start = [], 0  # per level: the topk closest anchors to each ground-truth centre
        for size in level_sizes:
            k = min(self.topk, size)
            idx = dist[:, start:start + size].topk(k, dim=1, largest=False).indices  # (B, k, g)
            candidates.append(idx + start)
            start += size
        cand = torch.cat(candidates, dim=1)  # (B, K, g) anchor indices, distinct per (image, gt)

        cand_iou = torch.gather(iou, 1, cand)  # (B, K, g)
        thresh = cand_iou.mean(1) + cand_iou.std(1).nan_to_num(0.0)  # (B, g): t_g = m_g + v_g (unbiased std)
        cand_boxes = gt_boxes[:, None].expand(-1, cand.shape[1], -1, -1)  # (B, K, g, 4)
        cand_xy = box_centers(anchors)[cand]  # (B, K, g, 2)
        sides = torch.cat([cand_xy - cand_boxes[..., :2], cand_boxes[..., 2:] - cand_xy], dim=-1)  # l, t, r, b
        is_pos = (cand_iou >= thresh[:, None]) & (sides.min(-1).values > self.eps) & gt_valid[:, None]
        return iou, torch.zeros_like(iou, dtype=torch.bool).scatter_(1, cand, is_pos)
