"""Max-IoU assignment of anchors to ground truths (Faster R-CNN, RetinaNet).

Batched over images: ground truths are padded to the largest count in the batch and masked, so a
whole batch is assigned with a handful of tensor operations and no Python loop over images or boxes.
Crowded batches go through in chunks of ground truths (:mod:`minidet.assigners.chunks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from minidet.assigners.chunks import anchor_tiles, gt_chunks, merge_best
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
    ``tile``: compare a cache-sized tile of anchors at a time (:func:`~minidet.assigners.chunks.anchor_tiles`);
    default ``None`` tiles on a CPU, where it is several times faster, and not on a GPU. Same result either way.
    """

    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.4
    min_pos_iou: float = 0.0
    allow_low_quality_matches: bool = True
    gt_chunk: int | None = None
    tile: bool | None = None

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
        tiled = anchors.device.type == "cpu" if self.tile is None else self.tile
        best = is_best = None
        for sl in gt_chunks(gt_boxes.shape[1], gt_boxes.shape[0] * anchors.shape[-2], self.gt_chunk):
            valid = gt_valid[:, None, sl]
            # padding becomes an empty box at the origin: IoU exactly 0 with every anchor, so no mask pass over
            # the (B, A, g) maps (an image without objects gets its -1 below)
            gts = torch.where(valid[:, 0, :, None], gt_boxes[:, sl], torch.zeros((), dtype=gt_boxes.dtype,
                                                                                 device=gt_boxes.device))
            num_anchors = anchors.shape[-2]
            tiles = anchor_tiles(num_anchors, gts.shape[0] * gts.shape[1]) if tiled else [slice(0, num_anchors)]

            def tile_iou(ts: slice) -> Tensor:
                return batched_box_iou(anchors[..., ts, :], gts)  # (B, a, g)

            # pass 1: each anchor's best ground truth, and each ground truth's best IoU over all anchors
            parts, gt_best = [], None
            for ts in tiles:
                iou = tile_iou(ts)
                parts.append(iou.max(dim=2))
                top = iou.amax(dim=1, keepdim=True)  # (B, 1, g)
                gt_best = top if gt_best is None else torch.maximum(gt_best, top)
            chunk_best = (torch.cat([v for v, _ in parts], 1), torch.cat([i for _, i in parts], 1))
            best = merge_best(best, *chunk_best, sl.start)  # (B, A) best IoU and its ground truth
            if self.allow_low_quality_matches:
                # pass 2: the anchors at a ground truth's best IoU (recomputed per tile: cached, and exact). No IoU
                # exceeds its ground truth's best, so "some IoU equals it" is "max(IoU - best) >= 0"; ground
                # truths that may not claim anchors get an infinite best.
                ok = valid & (gt_best > 0) & (gt_best >= self.min_pos_iou)
                claim_at = torch.where(ok, gt_best, torch.full((), float("inf"), dtype=gt_best.dtype,
                                                                device=gt_best.device))
                hits = []
                for ts in tiles:
                    iou = tile_iou(ts) if len(tiles) > 1 else iou
                    hits.append(iou.sub_(claim_at).amax(dim=2) >= 0)  # (B, a)
                hit = torch.cat(hits, 1)
                is_best = hit if is_best is None else is_best | hit
        max_iou, matched = best
        max_iou = torch.where(gt_valid.any(dim=1, keepdim=True), max_iou, -1.0)  # (B, A): -1 without objects
        pos = max_iou >= self.pos_iou_thr
        if is_best is not None:
            pos = pos | is_best
        neg = (max_iou < self.neg_iou_thr) & ~pos
        return AssignResult(matched_gt=matched, pos=pos, neg=neg, max_iou=max_iou)
