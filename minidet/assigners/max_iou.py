"""Max-IoU assignment of anchors to ground truths (Faster R-CNN, RetinaNet).

Batched over images: ground truths are padded to the largest count in the batch and masked, so a
whole batch is assigned with a handful of tensor operations and no Python loop over images or boxes.
Crowded batches go through in chunks of ground truths (:mod:`minidet.assigners.chunks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from minidet.assigners.chunks import gt_chunks, merge_best
from minidet.boxes.ops import batched_box_iou


@dataclass
class AssignResult:
    """Output of an assigner for a batch of ``B`` images and ``A`` anchors (or points).

    Attributes:
        matched_gt: ``(B, A)`` int64 index of the assigned ground truth; only meaningful where ``pos``.
        pos: ``(B, A)`` bool, positive samples.
        neg: ``(B, A)`` bool, negative samples. Anchors that are neither are ignored by the loss.
        max_iou: ``(B, A)`` IoU with the best ground truth (``-1`` when the image has none).
    """

    matched_gt: Tensor
    pos: Tensor
    neg: Tensor
    max_iou: Tensor

    @property
    def ignore(self) -> Tensor:
        return ~(self.pos | self.neg)


@dataclass
class MaxIoUAssigner:
    """Assign each anchor to the ground truth it overlaps most.

    * ``IoU >= pos_iou_thr`` -> positive; ``IoU < neg_iou_thr`` -> negative; in between -> ignored.
    * Low-quality matches (Faster R-CNN, Sec. 3.1.2): each ground truth also claims the anchors whose
      IoU with it equals its own highest IoU (if ``>= min_pos_iou``), so that no object is left without
      a positive. As in torchvision and Detectron, such an anchor keeps its own best ground truth.

    RetinaNet uses ``(0.5, 0.4)``; the RPN uses ``(0.7, 0.3)``. ``gt_chunk``: ground truths compared at
    once (default: as many as :data:`~minidet.assigners.chunks.MAX_PAIRS` allows; same result either way).
    """

    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.4
    min_pos_iou: float = 0.0
    allow_low_quality_matches: bool = True
    gt_chunk: int | None = None

    @torch.no_grad()
    def assign(self, anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor) -> AssignResult:
        """Assign a batch.

        Args:
            anchors: ``(A, 4)`` xyxy anchors shared by the batch, or ``(B, A, 4)`` per image (e.g. proposals).
            gt_boxes: ``(B, G, 4)`` padded ground-truth boxes.
            gt_valid: ``(B, G)`` bool, ``False`` on padding.

        Returns:
            An :class:`AssignResult`; images without objects get all anchors negative.
        """
        best = is_best = None
        for sl in gt_chunks(gt_boxes.shape[1], gt_boxes.shape[0] * anchors.shape[-2], self.gt_chunk):
            valid = gt_valid[:, None, sl]
            iou = batched_box_iou(anchors, gt_boxes[:, sl]).masked_fill(~valid, -1.0)  # (B, A, g)
            best = merge_best(best, *iou.max(dim=2), sl.start)  # (B, A) best IoU and its ground truth
            if self.allow_low_quality_matches:
                gt_best = iou.max(dim=1, keepdim=True).values  # (B, 1, g)
                ok = valid & (gt_best > 0) & (gt_best >= self.min_pos_iou)
                hit = ((iou == gt_best) & ok).any(dim=2)  # (B, A)
                is_best = hit if is_best is None else is_best | hit
        max_iou, matched = best
        pos = max_iou >= self.pos_iou_thr
        if is_best is not None:
            pos = pos | is_best
        neg = (max_iou < self.neg_iou_thr) & ~pos
        return AssignResult(matched_gt=matched, pos=pos, neg=neg, max_iou=max_iou)
