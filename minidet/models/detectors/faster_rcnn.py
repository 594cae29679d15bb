"""Faster R-CNN with FPN (Ren et al. 2015; Lin et al. 2017) and Libra R-CNN (Pang et al., CVPR 2019).

https://arxiv.org/abs/1506.01497 · https://arxiv.org/abs/1612.03144 · https://arxiv.org/abs/1904.02701

Libra R-CNN is this detector with three switches, one per imbalance it addresses:

* sample level: ``ProposalSampler(neg_sampler="iou_balanced", pos_sampler="instance_balanced")``
  (IoU-balanced sampling, Sec. 3.1);
* feature level: the neck wrapped in :class:`~minidet.models.necks.BalancedFPN` (Sec. 3.2);
* objective level: ``box_loss="balanced_l1"`` (Sec. 3.3).

See :func:`minidet.models.build_faster_rcnn` for the four constructor arguments of the ablation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minidet.assigners.crowd import CrowdRegions
from minidet.boxes.coders import DeltaXYWHCoder
from minidet.boxes.ops import pad_targets
from minidet.losses.balanced_l1 import balanced_l1_loss
from minidet.losses.regression import smooth_l1_loss
from minidet.models.detectors.base import Detector
from minidet.models.detectors.rpn import RegionProposalNetwork
from minidet.models.heads.roi_box_head import RoIBoxHead
from minidet.models.postprocess import postprocess_per_class
from minidet.samplers.proposal_sampler import ProposalSampler

BOX_LOSSES = ("smooth_l1", "balanced_l1")


class FasterRCNN(Detector):
    """Backbone -> neck (FPN on P2-P6, optionally balanced) -> RPN -> RoI sampling -> R-CNN box head.

    Args:
        backbone: returns ``{"c2": ..., "c5": ...}``; neck: FPN with ``extra_source="pool"`` (P6 for the RPN).
        rpn: :class:`RegionProposalNetwork`; roi_head: :class:`RoIBoxHead` (pools from P2-P5).
        num_classes: ``C``.
        sampler: :class:`ProposalSampler` (512 RoIs per image, 25 % positives, ground truths added).
        box_loss: ``"smooth_l1"`` (``box_beta = 1``, the paper's baseline) or ``"balanced_l1"`` (Libra
            R-CNN, ``balanced_l1 = (alpha, gamma, beta) = (0.5, 1.5, 1.0)``).
        score_thresh, nms_thresh, max_detections: inference (0.05, 0.5, 100 per image).

    The training losses are ``loss_rpn_cls``, ``loss_rpn_box``, ``loss_cls`` (softmax cross-entropy over
    the sampled RoIs) and ``loss_box`` (on the positives' class-specific deltas, divided by the number of
    sampled RoIs, as mmdetection and torchvision); ``stats/rcnn_num_pos`` and ``stats/hard_neg_fraction`` (sampled
    negatives with IoU > 0.05, the statistic of Libra R-CNN's Fig. 3) are logged too.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, rpn: RegionProposalNetwork, roi_head: RoIBoxHead,
                 num_classes: int, sampler: ProposalSampler | None = None, box_loss: str = "smooth_l1",
                 box_beta: float = 1.0, balanced_l1: tuple[float, float, float] = (0.5, 1.5, 1.0),
                 in_features: tuple[str, ...] = ("c2", "c3", "c4", "c5"), score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, max_detections: int = 100) -> None:
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {box_loss!r}")
        self.backbone, self.neck, self.rpn, self.roi_head = backbone, neck, rpn, roi_head
        self.num_classes = num_classes
        self.sampler = sampler or ProposalSampler()
        self.box_loss, self.box_beta, self.balanced_l1 = box_loss, box_beta, tuple(balanced_l1)
        self.box_coder = DeltaXYWHCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.in_features = in_features
        self.score_thresh, self.nms_thresh, self.max_detections = score_thresh, nms_thresh, max_detections

    def rcnn_head(self, feats: list[Tensor], rois: Tensor, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.roi_head(feats[: len(self.roi_head.names)], rois, tuple(images.shape[-2:]))

    def loss(self, images: Tensor, targets: list[dict[str, Tensor]], image_sizes: Tensor) -> dict[str, Tensor]:
        feats = self.features(images)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
        crowd = CrowdRegions.from_targets(targets, images.device)  # ignore regions for the RPN and the RoI sampler
        proposals, _, valid, rpn_losses = self.rpn(feats, image_sizes, (gt_boxes, gt_valid), crowd)
        s = self.sampler(proposals, valid, gt_boxes, gt_labels, gt_valid, self.num_classes, crowd=crowd)
        cls_logits, deltas, _ = self.rcnn_head(feats, s.rois, images)  # (B, S, C+1), (B, S, C, 4)
        norm = s.valid.sum().clamp(min=1).float()
        zero = torch.zeros((), device=images.device)
        ce = F.cross_entropy(cls_logits.float().flatten(0, 1), s.labels.flatten(), reduction="none").view(s.valid.shape)
        label = s.labels.clamp(max=self.num_classes - 1)
        pred = torch.gather(deltas.float(), 2, label[..., None, None].expand(-1, -1, 1, 4))[:, :, 0]  # (B, S, 4)
        # only positives have a target; elsewhere (background, empty slots of zero size) a placeholder keeps
        # every branch of the loss finite, so the masked-out elements cannot send NaN gradients back
        target = torch.where(s.pos[..., None], self.box_coder.encode(s.rois, s.matched_boxes), pred.detach())
        if self.box_loss == "balanced_l1":
            a, g, b = self.balanced_l1
            reg = balanced_l1_loss(pred, target, a, g, b).sum(-1)
        else:
            reg = smooth_l1_loss(pred, target, beta=self.box_beta).sum(-1)
        neg = s.valid & ~s.pos
        return {
            **rpn_losses,
            "loss_cls": torch.where(s.valid, ce, zero).sum() / norm,
            "loss_box": torch.where(s.pos, reg, zero).sum() / norm,
            "stats/rcnn_num_pos": s.pos.sum(1).float().mean(),
            "stats/hard_neg_fraction": (neg & (s.max_iou > 0.05)).sum() / neg.sum().clamp(min=1),
        }

    @torch.no_grad()
    def predict(self, images: Tensor, image_sizes: Tensor) -> list[dict[str, Tensor]]:
        feats = self.features(images)
        proposals, _, valid, _ = self.rpn(feats, image_sizes)
        cls_logits, deltas, _ = self.rcnn_head(feats, proposals, images)
        scores = cls_logits.float().softmax(-1)[..., : self.num_classes] * valid[..., None]  # (B, P, C)
        boxes = self.box_coder.decode(proposals[:, :, None, :], deltas.float())  # (B, P, C, 4)
        return postprocess_per_class(scores, boxes, image_sizes, self.score_thresh, self.nms_thresh, self.max_detections)
