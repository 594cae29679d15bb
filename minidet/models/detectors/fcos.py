"""FCOS (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019).

https://arxiv.org/abs/1904.01355
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from minidet.assigners.crowd import CrowdRegions
from minidet.assigners.fcos import FCOSAssigner
from minidet.boxes.coders import LTRBCoder
from minidet.boxes.ops import pad_targets
from minidet.losses.centerness import centerness_weighted_losses
from minidet.models.detectors.dense import DenseDetector
from minidet.models.points import PointGenerator, point_cells


class FCOS(DenseDetector):
    """Backbone + FPN (P3-P7) + :class:`~minidet.models.heads.FCOSHead`, one point per feature cell,
    :class:`~minidet.assigners.FCOSAssigner` (centre sampling, per-level scale ranges, smallest area
    wins), and three losses (Eq. 2 and Sec. 3.3):

    * classification: focal loss (or PFL / level-wise, see :class:`DenseDetector`) over all points,
      divided by the number of positives;
    * box: GIoU loss between the decoded prediction and its ground truth at every positive, weighted by
      the centerness target and divided by the sum of centerness targets, times ``box_loss_weight``;
    * centerness: BCE between the centerness logit and the target (Eq. 3), divided by the positives.

    At inference the score of class ``c`` is :math:`\\sqrt{\\sigma(\\mathrm{cls}_c)\\,\\sigma(\\mathrm{ctr})}`
    (the authors' code: centerness down-weights boxes far from an object's centre before NMS).

    Choices where sources differ, and why:

    * The paper (Eq. 2) uses the IoU loss, unweighted, over the positives; the authors' later code and
      mmdetection use GIoU weighted by the centerness target, with centre sampling and stride-normalised
      ReLU distances. Those improvements are the FCOS everyone compares with (and ATSS's baseline), so they
      are the defaults here.
    * ``nms_thresh = 0.6`` (the authors' ``NMS_TH``; mmdetection uses 0.5). The score threshold applies to
      the final score here; the authors' code thresholds the classification probability alone.

    The loss dict is ATSS's: ``loss_cls``, ``loss_box``, ``loss_centerness`` and their ``levels/...`` parts.

    Args:
        backbone, neck, head: see :class:`DenseDetector`; ``head`` returns logits, distances, centerness.
        point_generator: points for the neck's strides.
        num_classes: ``C``.
        assigner: default ``FCOSAssigner()`` (COCO scale ranges; see
            :func:`~minidet.assigners.fcos.scaled_ranges` for small images). One range per level.
        box_coder: default ``LTRBCoder(normalize=True)`` (distances in strides).
        box_loss_weight: factor on the GIoU loss (1).
        **kwargs: to :class:`DenseDetector` (``cls_loss``, ``level_resampling``, focal parameters,
            inference settings).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        point_generator: PointGenerator,
        num_classes: int,
        assigner: FCOSAssigner | None = None,
        box_coder: LTRBCoder | None = None,
        box_loss_weight: float = 1.0,
        **kwargs,
    ) -> None:
        kwargs.setdefault("nms_thresh", 0.6)
        super().__init__(backbone, neck, head, num_classes, **kwargs)
        if tuple(point_generator.strides) != tuple(neck.strides):
            raise ValueError(f"point strides {point_generator.strides} differ from the neck's {neck.strides}")
        self.assigner = assigner or FCOSAssigner()
        if len(self.assigner.scale_ranges) != len(neck.strides):
            raise ValueError(f"{len(self.assigner.scale_ranges)} scale ranges for {len(neck.strides)} pyramid levels")
        self.point_generator = point_generator
        self.box_coder = box_coder or LTRBCoder(normalize=True)
        self.box_loss_weight = box_loss_weight

    def dense_outputs(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, list[int]]:
        """``cls_logits`` ``(B, A, C)``, ``distances`` ``(B, A, 4)`` (strides), ``centerness`` logits
        ``(B, A)``, points ``(A, 2)``, their strides ``(A,)`` and the level sizes."""
        feats = self.features(images)
        cls_logits, distances, centerness = self.head(feats)
        points, strides, level_sizes = self.point_generator.grid([f.shape[-2:] for f in feats], images.device)
        return cls_logits, distances, centerness, points, strides, level_sizes

    def loss(self, images: Tensor, targets: list[dict[str, Tensor]], image_sizes: Tensor) -> dict[str, Tensor]:
        cls_logits, distances, ctr_logits, points, strides, level_sizes = self.dense_outputs(images)
        num_levels = len(level_sizes)
        levels = self.level_index(level_sizes, images.device)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
        assign = self.assigner.assign(points, strides, levels, gt_boxes, gt_valid)
        pos = assign.pos  # (B, A); every other point is negative, unless its cell lies in a crowd region
        # a point's element box is its one-stride cell (for crowd regions, and the placeholder target below)
        own = point_cells(points, strides)  # (A, 4)
        neg = CrowdRegions.from_targets(targets, images.device).negatives(own, assign.neg)

        labels = torch.gather(gt_labels, 1, assign.matched_gt).clamp(min=0)  # (B, A)
        cls_levels, cls_stats = self.classification_loss(cls_logits, labels, pos, neg | pos, levels, num_levels)

        matched = torch.gather(gt_boxes, 1, assign.matched_gt[..., None].expand(-1, -1, 4))  # (B, A, 4)
        # Non-positives compare with their one-stride cell: finite GIoU gradients to mask.
        matched = torch.where(pos[..., None], matched, own[None])
        pred_boxes = self.box_coder.decode(points[None], distances.float(), strides[None])
        box_levels, ctr_levels = centerness_weighted_losses(
            pred_boxes, matched, points, ctr_logits, pos, levels, num_levels, self.num_positives(pos))

        parts = {"cls": cls_levels, "box": self.box_loss_weight * box_levels, "centerness": ctr_levels}
        return {**self.loss_dict(parts, pos, neg, levels, level_sizes), **cls_stats}

    def predict_dense(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, list[int]]:
        cls_logits, distances, ctr_logits, points, strides, level_sizes = self.dense_outputs(images)
        boxes = self.box_coder.decode(points[None], distances.float(), strides[None])
        scores = torch.sqrt(torch.sigmoid(cls_logits.float()) * torch.sigmoid(ctr_logits.float())[..., None])
        return scores, boxes, level_sizes
