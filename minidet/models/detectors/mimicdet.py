"""MimicDet (Lu et al., "MimicDet: Bridging the Gap Between One-Stage and Two-Stage Object Detection",
ECCV 2020).

https://arxiv.org/abs/2009.11528 — the authors released no code: this implementation follows the paper's
description (Sec. 3), and every choice the paper leaves open is marked "minidet's choice".

A one-stage head classifies each anchor from features at the anchor's centre, whatever the box it
regresses to; a two-stage head pools features inside the box (RoIAlign). MimicDet trains both heads on
one backbone and makes the one-stage head (S-head, student) imitate the two-stage head (T-head, teacher);
at inference only the one-stage path runs.

* **Staggered feature pyramid** (Sec. 3): the FPN gives P2-P7 in training; P3-P7 feed the refinement
  module and the S-head, P2-P6 the T-head, which pools a box from the level one *finer* than its anchor's.
  At inference P2 is not computed.
* **Refinement module** (Sec. 3): class-agnostic binary classification and box regression on the dense
  anchors of P3-P7, RefineDet's anchor refinement (an RPN head, reused here), giving the refined anchors
  :math:`B_s`; anchors it scores below ``filter_thresh`` are easy negatives, dropped from the S-head's loss
  and from the detections.
* **S-head** (Sec. 3): :class:`~minidet.models.heads.SHead`, softmax cross-entropy with hard negative
  mining and L1 on the deltas relative to the refined anchors.
* **T-head** (Sec. 3): :class:`~minidet.models.heads.THead` on a sampled sparse set :math:`B_t` of refined
  anchors (plus the ground truths), labels by IoU >= 0.6, cross-entropy and L1.
* **Dual-path mimicking** (Sec. 3): :func:`~minidet.losses.mimic_loss` on a random subset :math:`B_m` of
  :math:`B_t`, reading the S-head at each box's original anchor position.

The loss is :math:`L = L_R + L_S + L_T + L_{mimic}`, each term logged (``loss_refine_*``, ``loss_s_*``,
``loss_t_*``, ``loss_mimic``), with the S/T cosine similarities as ``stats/mimic_cos_cls`` and
``stats/mimic_cos_reg`` (logged with the mimic loss switched off too).

minidet's choices: one square anchor per location (a guided deformable conv aligns one sampling grid per
location); refinement labels IoU >= 0.5 / < 0.4 (RefineDet's 0.5) with each object's best anchor positive,
its classification trained as an RPN's (binary cross-entropy on 256 random anchors per image, at most half
positive: random negatives are mostly easy ones, which is what the filter must learn to reject) and its
regression per positive (smooth L1; RefineDet's normalisation, so the refined boxes improve quickly);
S-head labels IoU >= 0.6 / < 0.4 against the refined anchors, each object's best refined anchor positive too,
three hard negatives per positive (SSD's ratio); :math:`B_t` drawn as Faster R-CNN's RoIs (25 % positives);
:math:`B_m` uniform over the :math:`B_t` samples that come from an anchor; the teacher's side of the
mimic loss detached.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minidet.assigners.max_iou import AssignResult, MaxIoUAssigner
from minidet.boxes.coders import DeltaXYWHCoder
from minidet.boxes.ops import pad_targets
from minidet.distributed import loss_normalizer
from minidet.losses.levels import level_index
from minidet.losses.mimic import mean_cosine, mimic_loss
from minidet.losses.regression import l1_loss, smooth_l1_loss
from minidet.models.anchors import AnchorGenerator
from minidet.models.detectors.base import Detector
from minidet.models.heads.s_head import HeadOutput, SHead
from minidet.models.heads.t_head import THead
from minidet.models.postprocess import postprocess_dense
from minidet.models.roi import level_roi_align, nearest_size_level
from minidet.samplers.hard_negative import hard_negative_mask
from minidet.samplers.proposal_sampler import ProposalSampler, RoISamples
from minidet.samplers.random_sampling import random_sample, sample_pos_neg
from minidet.samplers.ranking import as_quota, take_random


@dataclass
class Refinement:
    """The refinement module's output for a batch with ``A`` anchors over P3-P7.

    Attributes:
        objectness: ``(B, A)`` logits; deltas: ``(B, A, 4)``; anchors: ``(A, 4)``; refined: ``(B, A, 4)``
        decoded boxes :math:`B_s` (detached); level_sizes: anchors per level; delta_maps: the detached
        deltas of each level as ``(B, 4, H_l, W_l)`` maps, the S-head's guide.
    """

    objectness: Tensor
    deltas: Tensor
    anchors: Tensor
    refined: Tensor
    level_sizes: list[int]
    delta_maps: list[Tensor]


def box_loss(deltas: Tensor, boxes: Tensor, matched: Tensor, pos: Tensor, coder: DeltaXYWHCoder, beta: float = 0.0) -> Tensor:
    """Smooth L1 (``beta > 0``) or L1 (``beta = 0``) between ``deltas`` and ``encode(boxes, matched)``, summed
    over the 4 coordinates, 0 off ``pos``: ``(B, N)``. Elsewhere the target is a detached copy of the
    prediction, so elements without a target cannot send NaN gradients back."""
    pred = deltas.float()
    target = torch.where(pos[..., None], coder.encode(boxes, matched), pred.detach())
    loss = smooth_l1_loss(pred, target, beta) if beta > 0 else l1_loss(pred, target)
    return torch.where(pos, loss.sum(-1), torch.zeros((), device=pred.device))


class MimicDet(Detector):
    """Backbone -> FPN (P2-P7) -> refinement module -> S-head (+ T-head and mimic loss in training).

    Args:
        backbone; neck: :class:`~minidet.models.necks.FPN` on C2-C5 with two extra levels (P2-P7).
        refine_head: :class:`~minidet.models.heads.RPNHead` with one anchor per location (the refinement
            module's convs); anchor_generator: one anchor per location of P3-P7.
        s_head: :class:`SHead`; t_head: :class:`THead` (both ``shared`` or neither); num_classes: ``C``.
        refine_assigner: default IoU >= 0.5 positive, < 0.4 negative, best anchors positive.
        refine_samples: anchors per image in the refinement module's classification loss (256, half positive at most).
        s_assigner: the S-head's labels (default IoU >= 0.6 positive, < 0.4 negative, best refined anchors positive).
        sampler: draws :math:`B_t` (default: 512 per image, 25 % positives, IoU >= 0.6 positive, ground truths added).
        mimic: add :math:`L_{mimic}`; staggered: T-head one level finer (else on the anchor's level).
        num_mimic: :math:`|B_m|` per image (64). neg_pos_ratio: the S-head's hard negatives per positive (3, SSD's).
        filter_thresh: refinement probability below which an anchor is an easy negative (0.01: RefineDet's
            negative confidence 0.99). mimic_weight: weight of :math:`L_{mimic}` (1).
        roi_size, sampling_ratio: the T-head's RoIAlign (7, 2).
        score_thresh, topk_per_level, nms_thresh, max_detections: inference.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, refine_head: nn.Module, anchor_generator: AnchorGenerator,
                 s_head: SHead, t_head: THead, num_classes: int, refine_assigner: MaxIoUAssigner | None = None,
                 s_assigner: MaxIoUAssigner | None = None, sampler: ProposalSampler | None = None, refine_samples: int = 256,
                 mimic: bool = True,
                 staggered: bool = True, num_mimic: int = 64, neg_pos_ratio: int = 3, filter_thresh: float = 0.01,
                 mimic_weight: float = 1.0, roi_size: int = 7, sampling_ratio: int = 2,
                 in_features: tuple[str, ...] = ("c2", "c3", "c4", "c5"), score_thresh: float = 0.05,
                 topk_per_level: int = 1000, nms_thresh: float = 0.5, max_detections: int = 100) -> None:
        super().__init__()
        if len(neck.strides) != 6:
            raise ValueError(f"MimicDet needs a P2-P7 pyramid (6 levels), the neck gives strides {neck.strides}")
        if anchor_generator.num_anchors != 1 or tuple(anchor_generator.strides) != tuple(neck.strides[1:]):
            raise ValueError(f"the refinement module needs one anchor per location on P3-P7 (strides {neck.strides[1:]}), "
                             f"got {anchor_generator}")
        if s_head.shared != t_head.shared:
            raise ValueError(f"S-head shared={s_head.shared} but T-head shared={t_head.shared}: both or neither")
        self.backbone, self.neck, self.refine_head, self.s_head, self.t_head = backbone, neck, refine_head, s_head, t_head
        self.anchor_generator, self.num_classes, self.in_features = anchor_generator, num_classes, in_features
        self.refine_assigner, self.refine_samples = refine_assigner or MaxIoUAssigner(0.5, 0.4), refine_samples
        self.s_assigner = s_assigner or MaxIoUAssigner(0.6, 0.4)
        self.sampler = sampler or ProposalSampler(num=512, pos_fraction=0.25, pos_iou_thr=0.6, neg_iou_thr=0.6)
        self.refine_coder = DeltaXYWHCoder()
        self.box_coder = DeltaXYWHCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.mimic, self.staggered, self.num_mimic = mimic, staggered, num_mimic
        if not staggered:  # P2 is never computed: its convolutions are frozen, so that DDP (find_unused_parameters
            for m in (neck.lateral[0], neck.output[0]):  # False) and the optimiser do not wait for their gradients
                m.requires_grad_(False)
        self.neg_pos_ratio, self.filter_thresh, self.mimic_weight = neg_pos_ratio, filter_thresh, mimic_weight
        self.roi_size, self.sampling_ratio = roi_size, sampling_ratio
        self.score_thresh, self.topk_per_level = score_thresh, topk_per_level
        self.nms_thresh, self.max_detections = nms_thresh, max_detections

    @property
    def s_strides(self) -> tuple[int, ...]:
        """Strides of the refinement module's and S-head's levels, P3-P7."""
        return tuple(self.neck.strides[1:])

    @property
    def t_strides(self) -> tuple[int, ...]:
        """Strides of the T-head's levels: P2-P6 (staggered) or P3-P7; entry ``i`` pairs with S-head level ``i``."""
        return tuple(self.neck.strides[:5] if self.staggered else self.neck.strides[1:])

    def features(self, images: Tensor, with_p2: bool = False) -> list[Tensor]:
        """``images`` ``(B, 3, H, W)`` in [0, 1] -> P2-P7 (``with_p2``) or P3-P7, finest first."""
        feats = self.backbone(self.normalize(images))
        return self.neck([feats[k] for k in self.in_features], skip=0 if with_p2 else 1)

    def refinement(self, s_feats: list[Tensor]) -> Refinement:
        """Run the refinement module on P3-P7 and decode the refined anchors :math:`B_s`."""
        obj, deltas = self.refine_head(s_feats)  # (B, A), (B, A, 4)
        anchors_l = self.anchor_generator([f.shape[-2:] for f in s_feats], obj.device)
        anchors = torch.cat(anchors_l)
        refined = self.refine_coder.decode(anchors[None], deltas.detach().float())
        sizes = [len(a) for a in anchors_l]
        maps = [d.reshape(d.shape[0], f.shape[-2], f.shape[-1], 4).permute(0, 3, 1, 2)  # (y, x) order of the anchors
                for d, f in zip(deltas.detach().split(sizes, 1), s_feats)]
        return Refinement(obj, deltas, anchors, refined, sizes, maps)

    def kept(self, refinement: Refinement) -> Tensor:
        """``(B, A)`` bool: anchors the refinement module does not call easy negatives."""
        return torch.sigmoid(refinement.objectness.detach().float()) >= self.filter_thresh

    def teacher(self, t_feats: list[Tensor], samples: RoISamples, level_sizes: list[int]) -> HeadOutput:
        """T-head on :math:`B_t`: a box from an anchor of S-head level ``l`` is pooled from T-level ``l`` (P_{l+2}
        when staggered); an added ground truth from the level of the anchor size nearest to its own."""
        num_anchors = sum(level_sizes)
        from_anchor = samples.index < num_anchors
        anchor_level = level_index(level_sizes, samples.rois.device)[samples.index.clamp(max=num_anchors - 1)]
        base = self.anchor_generator.octave_base_scale * self.s_strides[0]
        lvl = torch.where(from_anchor, anchor_level, nearest_size_level(samples.rois, base, len(level_sizes)))
        pooled = level_roi_align(t_feats, samples.rois, lvl, self.t_strides, self.roi_size, self.sampling_ratio)
        return self.t_head(pooled)

    def loss(self, images: Tensor, targets: list[dict[str, Tensor]], image_sizes: Tensor) -> dict[str, Tensor]:
        pyramid = self.features(images, with_p2=self.staggered)  # P2-P7, or P3-P7 when the T-head is not staggered
        s_feats, t_feats = (pyramid[1:] if self.staggered else pyramid), pyramid[:5]
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
        zero = torch.zeros((), device=images.device)
        gather_gt = lambda a: torch.gather(gt_boxes, 1, a.matched_gt[..., None].expand(-1, -1, 4))  # noqa: E731
        out: dict[str, Tensor] = {}

        # L_R: binary cross-entropy on sampled anchors (per sample), smooth L1 on the positives (per positive)
        r = self.refinement(s_feats)
        ra: AssignResult = self.refine_assigner.assign(r.anchors, gt_boxes, gt_valid)
        r_pos, r_num_neg, _ = sample_pos_neg(ra.pos, ra.neg, self.refine_samples, 0.5)
        r_sampled = r_pos | random_sample(ra.neg, r_num_neg)
        bce = F.binary_cross_entropy_with_logits(r.objectness.float(), ra.pos.float(), reduction="none")
        out["loss_refine_cls"] = torch.where(r_sampled, bce, zero).sum() / loss_normalizer(r_sampled.sum().float())
        out["loss_refine_box"] = box_loss(r.deltas, r.anchors[None], gather_gt(ra), ra.pos, self.refine_coder,
                                          1 / 9).sum() / loss_normalizer(ra.pos.sum().float())
        keep = self.kept(r)

        # L_S on the kept refined anchors: softmax cross-entropy on the positives and the hardest negatives,
        # L1 on the positives' deltas, both per positive
        s = self.s_head(s_feats, r.delta_maps)
        sa = self.s_assigner.assign(r.refined, gt_boxes, gt_valid)
        pos = sa.pos & keep
        labels = torch.where(pos, torch.gather(gt_labels, 1, sa.matched_gt), self.num_classes)
        ce = F.cross_entropy(s.cls_logits.float().flatten(0, 1), labels.flatten(), reduction="none").view(labels.shape)
        counted = pos | hard_negative_mask(ce, sa.neg & keep, self.neg_pos_ratio * pos.sum(1).clamp(min=1))
        n_s = loss_normalizer(pos.sum().float())
        out["loss_s_cls"] = torch.where(counted, ce, zero).sum() / n_s
        out["loss_s_box"] = box_loss(s.deltas, r.refined, gather_gt(sa), pos, self.box_coder).sum() / n_s

        # L_T on B_t: cross-entropy and L1, per sampled RoI
        bt = self.sampler(r.refined, keep, gt_boxes, gt_labels, gt_valid, self.num_classes)
        t = self.teacher(t_feats, bt, r.level_sizes)
        t_ce = F.cross_entropy(t.cls_logits.float().flatten(0, 1), bt.labels.flatten(), reduction="none").view(bt.labels.shape)
        n_t = loss_normalizer(bt.valid.sum().float())
        out["loss_t_cls"] = torch.where(bt.valid, t_ce, zero).sum() / n_t
        out["loss_t_box"] = box_loss(t.deltas, bt.rois, bt.matched_boxes, bt.pos, self.box_coder).sum() / n_t

        # L_mimic on B_m: the S-head read where each box's anchor is (the added ground truths have none)
        num_anchors = r.anchors.shape[0]
        bm = take_random(bt.valid & (bt.index < num_anchors), as_quota(self.num_mimic, len(images), images.device))
        idx = bt.index.clamp(max=num_anchors - 1)[..., None]
        s_logits = torch.gather(s.cls_logits, 1, idx.expand(-1, -1, s.cls_logits.shape[-1]))
        s_feat = torch.gather(s.feature, 1, idx.expand(-1, -1, s.feature.shape[-1]))
        if self.mimic:
            pairs = [(s_feat, t.feature)] if self.s_head.shared else [(s_logits, t.cls_logits), (s_feat, t.feature)]
            out["loss_mimic"] = self.mimic_weight * mimic_loss(pairs, bm)[0]
        with torch.no_grad():  # logged with or without the mimic loss: the control of the lesson's plot
            out["stats/mimic_cos_cls"] = mean_cosine(s_logits, t.cls_logits, bm)
            out["stats/mimic_cos_reg"] = mean_cosine(s_feat, t.feature, bm)
        return {**out, "stats/refine_num_pos": ra.pos.sum(1).float().mean(), "stats/s_num_pos": pos.sum(1).float().mean(),
                "stats/t_num_pos": bt.pos.sum(1).float().mean(), "stats/kept_fraction": keep.float().mean()}

    @torch.no_grad()
    def predict(self, images: Tensor, image_sizes: Tensor) -> list[dict[str, Tensor]]:
        """Backbone, P3-P7, refinement module and S-head only: the T-head is not run."""
        feats = self.features(images, with_p2=False)
        r = self.refinement(feats)
        s = self.s_head(feats, r.delta_maps, with_feature=False)
        scores = s.cls_logits.float().softmax(-1)[..., : self.num_classes] * self.kept(r)[..., None]
        boxes = self.box_coder.decode(r.refined, s.deltas.float())
        return postprocess_dense(scores, boxes, r.level_sizes, image_sizes, self.score_thresh, self.topk_per_level,
                                 self.nms_thresh, self.max_detections)
