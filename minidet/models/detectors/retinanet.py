"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

https://arxiv.org/abs/1708.02002
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from minidet.assigners.crowd import CrowdRegions
from minidet.assigners.max_iou import MaxIoUAssigner
from minidet.boxes.coders import DeltaXYWHCoder
from minidet.boxes.ops import pad_targets
from minidet.losses.levels import sum_per_level
from minidet.losses.regression import l1_loss, smooth_l1_loss
from minidet.models.anchors import AnchorGenerator
from minidet.models.detectors.dense import DenseDetector


class RetinaNet(DenseDetector):
    """Backbone + FPN (P3-P7) + :class:`~minidet.models.heads.RetinaHead` + anchors, max-IoU assignment,
    focal loss for classification and smooth L1 (or L1) on box deltas.

    The loss is normalised by the number of positive anchors in the batch (Sec. 3.3), averaged over
    processes under DDP; the classification loss can instead be Progressive Focal Loss and/or normalised
    level by level (UMOP), see :class:`DenseDetector`. Besides ``loss_cls`` and ``loss_box`` the loss
    dict carries, for plots:
    ``levels/loss_cls``, ``levels/loss_box`` (the per-level parts, which sum to the totals),
    ``levels/num_pos``, ``levels/num_neg`` and ``levels/pos_fraction`` (positives among all anchors
    of the level, the statistic of UMOP's Fig. 2).

    Args:
        backbone, neck, head: see :class:`DenseDetector`.
        anchor_generator: anchors for the neck's strides.
        num_classes: ``C``.
        assigner: default ``MaxIoUAssigner(0.5, 0.4)``.
        reg_loss: ``"smooth_l1"`` (Detectron, beta 1/9) or ``"l1"`` (torchvision).
        **kwargs: to :class:`DenseDetector`: ``cls_loss``, ``level_resampling``, ``focal_alpha``,
            ``focal_gamma``, inference settings.
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        anchor_generator: AnchorGenerator,
        num_classes: int,
        assigner: MaxIoUAssigner | None = None,
        box_coder: DeltaXYWHCoder | None = None,
        reg_loss: str = "smooth_l1",
        **kwargs,
    ) -> None:
        super().__init__(backbone, neck, head, num_classes, **kwargs)
        if tuple(anchor_generator.strides) != tuple(neck.strides):
            raise ValueError(f"anchor strides {anchor_generator.strides} differ from the neck's {neck.strides}")
        if reg_loss not in ("smooth_l1", "l1"):
            raise ValueError(f"reg_loss must be 'smooth_l1' or 'l1', got {reg_loss!r}")
        self.anchor_generator = anchor_generator
        self.assigner = assigner or MaxIoUAssigner()
        self.box_coder = box_coder or DeltaXYWHCoder()
        self.reg_loss = reg_loss

    def dense_outputs(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, list[int]]:
        """Run the network: ``cls_logits`` ``(B, A, C)``, ``box_deltas`` ``(B, A, 4)``, anchors ``(A, 4)``, level sizes."""
        feats = self.features(images)
        cls_logits, box_deltas = self.head(feats)
        anchors = self.anchor_generator([f.shape[-2:] for f in feats], images.device)
        return cls_logits, box_deltas, torch.cat(anchors), [len(a) for a in anchors]

    def loss(self, images: Tensor, targets: list[dict[str, Tensor]], image_sizes: Tensor) -> dict[str, Tensor]:
        cls_logits, box_deltas, anchors, level_sizes = self.dense_outputs(images)
        num_levels = len(level_sizes)
        levels = self.level_index(level_sizes, images.device)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
        assign = self.assigner.assign(anchors, gt_boxes, gt_valid)
        neg = CrowdRegions.from_targets(targets, images.device).negatives(anchors, assign.neg)  # crowds: ignored
        pos, valid = assign.pos, assign.pos | neg  # (B, A)

        labels = torch.gather(gt_labels, 1, assign.matched_gt).clamp(min=0)  # (B, A)
        cls_levels, cls_stats = self.classification_loss(cls_logits, labels, pos, valid, levels, num_levels)

        matched = torch.gather(gt_boxes, 1, assign.matched_gt[..., None].expand(-1, -1, 4))  # (B, A, 4)
        reg_targets = self.box_coder.encode(anchors[None], matched)
        reg = smooth_l1_loss(box_deltas.float(), reg_targets) if self.reg_loss == "smooth_l1" else l1_loss(box_deltas.float(), reg_targets)
        reg_loss = torch.where(pos, reg.sum(-1), torch.zeros((), device=reg.device))  # (B, A)
        box_levels = sum_per_level(reg_loss, levels, num_levels) / self.num_positives(pos)
        out = self.loss_dict({"cls": cls_levels, "box": box_levels}, pos, neg, levels, level_sizes)
        return {**out, **cls_stats}

    def predict_dense(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, list[int]]:
        cls_logits, box_deltas, anchors, level_sizes = self.dense_outputs(images)
        boxes = self.box_coder.decode(anchors[None], box_deltas.float())
        return torch.sigmoid(cls_logits.float()), boxes, level_sizes
