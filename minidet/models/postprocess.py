"""From dense scores and boxes to a short list of detections per image.

One pass for the whole batch: per level, the top-k candidates of every image are taken with one
``topk``; then a single :func:`torchvision.ops.batched_nms` call suppresses overlaps, grouping by
(image, class) so that boxes of different images or classes never suppress each other.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from minidet.boxes.ops import clip_boxes


def postprocess_dense(
    scores: Tensor,
    boxes: Tensor,
    level_sizes: list[int],
    image_sizes: Tensor,
    score_thresh: float = 0.05,
    topk_per_level: int = 1000,
    nms_thresh: float = 0.5,
    max_detections: int = 100,
) -> list[dict[str, Tensor]]:
    """Score threshold, top-k per level, class-wise NMS and a cap on detections per image.

    Args:
        scores: ``(B, A, C)`` probabilities (sigmoid, or e.g. ``sqrt(cls * centerness)`` for FCOS).
        boxes: ``(B, A, 4)`` decoded xyxy boxes in input-image pixels.
        level_sizes: number of anchors/points of each level (``sum == A``).
        image_sizes: ``(B, 2)`` ``(H, W)`` of each un-padded image, to clip boxes.

    Returns:
        ``B`` dicts with ``boxes`` ``(K, 4)``, ``scores`` ``(K,)`` and ``labels`` ``(K,)`` int64 (``0..C-1``),
        sorted by decreasing score, ``K <= max_detections``.
    """
    bsz, _, num_classes = scores.shape
    boxes = clip_boxes(boxes, image_sizes)
    cand_scores, cand_boxes, cand_labels = [], [], []
    for lvl_scores, lvl_boxes in zip(scores.split(level_sizes, dim=1), boxes.split(level_sizes, dim=1)):
        flat = lvl_scores.reshape(bsz, -1)  # (B, A_l * C)
        k = min(topk_per_level, flat.shape[1])
        top_scores, top_idx = flat.topk(k, dim=1)  # (B, k)
        anchor_idx = top_idx // num_classes
        cand_scores.append(top_scores)
        cand_labels.append(top_idx % num_classes)
        cand_boxes.append(torch.gather(lvl_boxes, 1, anchor_idx[..., None].expand(-1, -1, 4)))
    s = torch.cat(cand_scores, dim=1)  # (B, K)
    b = torch.cat(cand_boxes, dim=1)  # (B, K, 4)
    lab = torch.cat(cand_labels, dim=1)  # (B, K)
    img = torch.arange(bsz, device=s.device)[:, None].expand_as(s)
    keep = s > score_thresh
    s, b, lab, img = s[keep], b[keep], lab[keep], img[keep]
    kept = batched_nms(b, s, img * num_classes + lab, nms_thresh)  # sorted by decreasing score
    s, b, lab, img = s[kept], b[kept], lab[kept], img[kept]
    results = []
    for i in range(bsz):
        sel = (img == i).nonzero().squeeze(1)[:max_detections]
        results.append({"boxes": b[sel], "scores": s[sel], "labels": lab[sel]})
    return results
