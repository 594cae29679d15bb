"""From dense scores and boxes to a short list of detections per image.

Per level, the top-k candidates of every image are taken with one batched ``topk``; then each image
gets its own class-wise :func:`torchvision.ops.batched_nms`, as torchvision's detectors do. One NMS call
over the whole batch grouped by (image, class) gives the same detections, but its cost grows with the
square of the *batch's* box count (the offset trick sorts and compares all boxes of the call at once),
which a trained model keeping hundreds of boxes per image makes slow (README: post-processing).
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
    return nms_per_image(s, b, lab, score_thresh, nms_thresh, max_detections)


def nms_per_image(scores: Tensor, boxes: Tensor, labels: Tensor, score_thresh: float, nms_thresh: float,
                  max_detections: int) -> list[dict[str, Tensor]]:
    """Candidates ``(B, K)`` scores, ``(B, K, 4)`` boxes, ``(B, K)`` labels -> per image: score threshold,
    class-wise NMS (:func:`~torchvision.ops.batched_nms`, grouped by label) and the ``max_detections`` best,
    sorted by decreasing score."""
    results = []
    for s, b, lab in zip(scores, boxes, labels):
        keep = s > score_thresh
        s, b, lab = s[keep], b[keep], lab[keep]
        kept = batched_nms(b, s, lab, nms_thresh)[:max_detections]  # sorted by decreasing score
        results.append({"boxes": b[kept], "scores": s[kept], "labels": lab[kept]})
    return results


def postprocess_per_class(scores: Tensor, boxes: Tensor, image_sizes: Tensor, score_thresh: float = 0.05,
                          nms_thresh: float = 0.5, max_detections: int = 100) -> list[dict[str, Tensor]]:
    """Post-processing of a two-stage head, whose boxes are class-specific: score threshold, class-wise
    NMS per image (:func:`nms_per_image`) and a cap per image.

    Args:
        scores: ``(B, N, C)`` class probabilities (background dropped); boxes: ``(B, N, C, 4)`` xyxy.
        image_sizes: ``(B, 2)`` un-padded ``(H, W)``, to clip boxes.

    Returns:
        ``B`` dicts as :func:`postprocess_dense`.
    """
    bsz, n, num_classes = scores.shape
    boxes = clip_boxes(boxes.reshape(bsz, n * num_classes, 4), image_sizes)
    s = scores.reshape(bsz, -1)
    lab = torch.arange(num_classes, device=s.device).repeat(n)[None].expand_as(s)
    return nms_per_image(s, boxes, lab, score_thresh, nms_thresh, max_detections)
