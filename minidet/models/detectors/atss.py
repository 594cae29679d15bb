"""ATSS (Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive
Training Sample Selection", CVPR 2020).

https://arxiv.org/abs/1912.02424
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from minidet.assigners.crowd import CrowdRegions
from minidet.assigners.atss import ATSSAssigner, box_centers
from minidet.boxes.coders import DeltaXYWHCoder
from minidet.boxes.ops import pad_targets
from minidet.losses.centerness import centerness_weighted_losses
from minidet.models.anchors import AnchorGenerator
from minidet.models.detectors.dense import DenseDetector


SCORE_FORMS = ("mmdet", "authors")


class ATSS(DenseDetector):
    """Backbone + FPN (P3-P7) + :class:`~minidet.models.heads.ATSSHead`, one square anchor per cell
    (side ``8 x stride``), :class:`~minidet.assigners.ATSSAssigner`, and three losses:

    * classification: focal loss (or PFL / level-wise, see :class:`DenseDetector`) over all anchors,
      divided by the number of positives;
    * box: GIoU loss between the decoded predicted box and its ground truth at every positive, weighted
      by the centerness target and divided by the sum of centerness targets, times ``box_loss_weight``;
    * centerness: binary cross-entropy between the predicted centerness logit and the centerness target
      (FCOS Eq. 3, from the anchor centre), divided by the number of positives.

    Positive counts and the centerness sum are averaged over processes under DDP.

    **Scores at inference** (``score_form``), where the sources differ:

    * ``"mmdet"`` (mmdetection 2.x, minidet's default so far): the score is ``sigmoid(cls) * sigmoid(ctr)``,
      and the ``score_thresh`` of 0.05 applies to that product;
    * ``"authors"`` (``sfzhang15/ATSS``, ``atss_core/modeling/rpn/atss/inference.py``): a candidate must have
      ``sigmoid(cls) > score_thresh`` (``INFERENCE_TH`` 0.05) on the class score alone, and its score is
      ``sqrt(sigmoid(cls) * sigmoid(ctr))``. The square root does not change the ranking (nor AP), but a
      threshold on the class score keeps the boxes whose centerness is low, which the product threshold drops.

    Choices where sources differ, and why:

    * Deltas are encoded with weights ``(10, 10, 5, 5)``: the authors' ``BBOX_REG_WEIGHTS`` (mmdetection:
      ``target_stds = (0.1, 0.1, 0.2, 0.2)``). GIoU is scale-free, so the weights only change how big a
      step in delta space moves the box, which the learnable per-level scales partly absorb anyway.
    * ``box_loss_weight = 2``: the authors' ``REG_LOSS_WEIGHT`` and mmdetection's GIoU ``loss_weight``.
    * The box loss is divided by the centerness sum itself (authors' code); mmdetection clamps that sum
      to at least 1. Here it is only kept away from 0.

    The loss dict is RetinaNet's (``loss_cls``, ``loss_box``, ``levels/...``) plus ``loss_centerness`` and
    ``levels/loss_centerness``; the per-level parts sum to the totals.

    Args:
        backbone, neck, head: see :class:`DenseDetector`; ``head`` returns logits, deltas, centerness.
        anchor_generator: anchors for the neck's strides (ATSS: ``octave_base_scale=8``,
            ``scales_per_octave=1``, ``ratios=(1.0,)``).
        num_classes: ``C``.
        assigner: default ``ATSSAssigner(topk=9)``.
        box_coder: default ``DeltaXYWHCoder((10, 10, 5, 5))``.
        box_loss_weight: factor on the GIoU loss (2).
        score_form: ``"mmdet"`` or ``"authors"`` (see above).
        **kwargs: to :class:`DenseDetector` (``cls_loss``, ``level_resampling``, focal parameters,
            inference settings; ``nms_thresh`` defaults to ATSS's 0.6).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        anchor_generator: AnchorGenerator,
        num_classes: int,
        assigner: ATSSAssigner | None = None,
        box_coder: DeltaXYWHCoder | None = None,
        box_loss_weight: float = 2.0,
        score_form: str = "mmdet",
        **kwargs,
    ) -> None:
        if score_form not in SCORE_FORMS:
            raise ValueError(f"score_form must be one of {SCORE_FORMS}, got {score_form!r}")
        kwargs.setdefault("nms_thresh", 0.6)
        super().__init__(backbone, neck, head, num_classes, **kwargs)
        if tuple(anchor_generator.strides) != tuple(neck.strides):
            raise ValueError(f"anchor strides {anchor_generator.strides} differ from the neck's {neck.strides}")
        self.anchor_generator = anchor_generator
        self.assigner = assigner or ATSSAssigner()
        self.box_coder = box_coder or DeltaXYWHCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.box_loss_weight = box_loss_weight
        self.score_form = score_form

    @property
    def scores_prefiltered(self) -> bool:  # the authors' threshold is applied in predict_dense
        return self.score_form == "authors"

    def dense_outputs(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, list[int]]:
        """``cls_logits`` ``(B, A, C)``, ``box_deltas`` ``(B, A, 4)``, ``centerness`` logits ``(B, A)``,
        anchors ``(A, 4)`` and the level sizes."""
        feats = self.features(images)
        cls_logits, box_deltas, centerness = self.head(feats)
        anchors = self.anchor_generator([f.shape[-2:] for f in feats], images.device)
        return cls_logits, box_deltas, centerness, torch.cat(anchors), [len(a) for a in anchors]

    def loss(self, images: Tensor, targets: list[dict[str, Tensor]], image_sizes: Tensor) -> dict[str, Tensor]:
        cls_logits, box_deltas, ctr_logits, anchors, level_sizes = self.dense_outputs(images)
        num_levels = len(level_sizes)
        levels = self.level_index(level_sizes, images.device)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
        assign = self.assigner.assign(anchors, level_sizes, gt_boxes, gt_valid)
        pos = assign.pos  # (B, A); every other anchor is negative, unless it lies in a crowd region
        neg = CrowdRegions.from_targets(targets, images.device).negatives(anchors, assign.neg)

        labels = torch.gather(gt_labels, 1, assign.matched_gt).clamp(min=0)  # (B, A)
        cls_levels, cls_stats = self.classification_loss(cls_logits, labels, pos, neg | pos, levels, num_levels)

        matched = torch.gather(gt_boxes, 1, assign.matched_gt[..., None].expand(-1, -1, 4))  # (B, A, 4)
        # Non-positives compare the prediction with their own anchor: finite values and gradients that
        # the mask below then zeroes (a degenerate padding box could give NaN gradients through GIoU).
        matched = torch.where(pos[..., None], matched, anchors[None])
        pred_boxes = self.box_coder.decode(anchors[None], box_deltas.float())
        box_levels, ctr_levels = centerness_weighted_losses(
            pred_boxes, matched, box_centers(anchors), ctr_logits, pos, levels, num_levels, self.num_positives(pos))

        parts = {"cls": cls_levels, "box": self.box_loss_weight * box_levels, "centerness": ctr_levels}
        return {**self.loss_dict(parts, pos, neg, levels, level_sizes), **cls_stats}

    def predict_dense(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, list[int]]:
        cls_logits, box_deltas, ctr_logits, anchors, level_sizes = self.dense_outputs(images)
        boxes = self.box_coder.decode(anchors[None], box_deltas.float())
        cls = torch.sigmoid(cls_logits.float())
        scores = cls * torch.sigmoid(ctr_logits.float())[..., None]
        if self.score_form == "authors":  # threshold the class score, rank by the geometric mean
            scores = torch.where(cls > self.score_thresh, scores.sqrt(), 0.0)
        return scores, boxes, level_sizes
