"""Which proposals train the R-CNN head: assignment to ground truths and sampling (Fast R-CNN, Sec. 2.3;
Libra R-CNN, Sec. 3.1), batched over images with fixed shapes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from minidet.assigners.max_iou import AssignResult, MaxIoUAssigner
from minidet.samplers.instance_balanced import instance_balanced_pos_mask
from minidet.samplers.iou_balanced import iou_balanced_neg_mask
from minidet.samplers.random_sampling import random_sample, sample_pos_neg

NEG_SAMPLERS = ("random", "iou_balanced")
IOU_BALANCED_FORMS = {  # which arguments of the IoU-balanced sampler reproduce which source (iou_balanced.py)
    "paper": {"floor_thr": -1.0, "bin_range": "negatives"},  # K bins over the negatives' IoU (minidet's default)
    "code": {"floor_thr": 0.0, "bin_range": "all"},  # the authors' sampler after its first call (floor_thr -> 0)
}
POS_SAMPLERS = ("random", "instance_balanced")


@dataclass
class RoISamples:
    """The sampled RoIs of a batch, ``S`` slots per image.

    Attributes:
        rois: ``(B, S, 4)`` xyxy boxes; labels: ``(B, S)`` class ``0..C-1``, or ``C`` for background;
        matched_boxes: ``(B, S, 4)`` ground truth of each positive; pos, valid: ``(B, S)`` bool (a slot is
        ``valid`` when it holds a sampled RoI); max_iou: ``(B, S)`` IoU with the best ground truth;
        index: ``(B, S)`` int64 position of each slot's RoI among the candidates (the proposals, then the
        ground truths when they are added), e.g. to find the anchor a sampled box came from.
    """

    rois: Tensor
    labels: Tensor
    matched_boxes: Tensor
    pos: Tensor
    valid: Tensor
    max_iou: Tensor
    index: Tensor | None = None


@dataclass
class ProposalSampler:
    """Assign proposals (plus the ground truths themselves, ``add_gt``) by max IoU (positive at
    ``IoU >= 0.5``, negative below 0.5, no low-quality matches) and sample ``num`` per image with at most
    ``pos_fraction`` positives: 512 and 25 % as Faster R-CNN.

    ``neg_sampler``: ``"random"`` or ``"iou_balanced"`` (:func:`~minidet.samplers.iou_balanced_neg_mask`
    with ``num_bins``, ``floor_thr``, ``floor_fraction``; ``bin_range="negatives"`` bins the negatives' own
    IoU range, ``"all"`` lets the bins reach the highest IoU of all candidates, as mmdetection does).
    ``bin_range="all"`` alone does not reproduce the authors' sampler: it also turns ``floor_thr = -1`` into
    0 after its first call, so IoU-0 negatives become a floor used only to fill a shortfall.
    :meth:`iou_balanced_form` gives the settings: ``"paper"`` (``floor_thr=-1, bin_range="negatives"``, the
    defaults) or ``"code"`` (``floor_thr=0, bin_range="all"``: every call of the authors' sampler but the
    first; ``floor_thr=-1, bin_range="all"`` is that first call).
    ``pos_sampler``: ``"random"`` or ``"instance_balanced"``.
    """

    num: int = 512
    pos_fraction: float = 0.25
    add_gt: bool = True
    pos_iou_thr: float = 0.5
    neg_iou_thr: float = 0.5
    neg_sampler: str = "random"
    pos_sampler: str = "random"
    num_bins: int = 3
    floor_thr: float = -1.0
    floor_fraction: float = 0.0
    bin_range: str = "negatives"

    def __post_init__(self) -> None:
        if self.neg_sampler not in NEG_SAMPLERS:
            raise ValueError(f"neg_sampler must be one of {NEG_SAMPLERS}, got {self.neg_sampler!r}")
        if self.pos_sampler not in POS_SAMPLERS:
            raise ValueError(f"pos_sampler must be one of {POS_SAMPLERS}, got {self.pos_sampler!r}")
        if self.bin_range not in ("negatives", "all"):
            raise ValueError(f"bin_range must be 'negatives' or 'all', got {self.bin_range!r}")

    @classmethod
    def iou_balanced_form(cls, form: str, **kwargs) -> "ProposalSampler":
        """An IoU-balanced sampler as ``form`` (``"paper"`` or ``"code"``, see :data:`IOU_BALANCED_FORMS`) says;
        ``kwargs`` set the other fields."""
        if form not in IOU_BALANCED_FORMS:
            raise ValueError(f"iou_balanced form must be one of {tuple(IOU_BALANCED_FORMS)}, got {form!r}")
        return cls(neg_sampler="iou_balanced", **{**kwargs, **IOU_BALANCED_FORMS[form]})

    @torch.no_grad()
    def assign(self, proposals: Tensor, valid: Tensor, gt_boxes: Tensor, gt_valid: Tensor) -> tuple[Tensor, Tensor, AssignResult]:
        """Candidates ``(B, N, 4)`` (proposals, then ground truths when ``add_gt``), their validity and assignment."""
        if self.add_gt:
            proposals = torch.cat([proposals, gt_boxes.to(proposals.dtype)], 1)
            valid = torch.cat([valid, gt_valid], 1)
        a = MaxIoUAssigner(self.pos_iou_thr, self.neg_iou_thr, allow_low_quality_matches=False).assign(proposals, gt_boxes, gt_valid)
        a = AssignResult(a.matched_gt, a.pos & valid, a.neg & valid, a.max_iou)
        return proposals, valid, a

    @torch.no_grad()
    def sample(self, assign: AssignResult, valid: Tensor, num_gts: int, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor]:
        """``(B, N)`` masks of the sampled positives and negatives (``num_gts``: padded ground-truth count ``G``)."""
        if self.pos_sampler == "random":
            pos, num_neg, _ = sample_pos_neg(assign.pos, assign.neg, self.num, self.pos_fraction, generator)
        else:
            quota = int(self.num * self.pos_fraction)
            pos = instance_balanced_pos_mask(assign.matched_gt, assign.pos, quota, num_gts, generator)
            num_neg = self.num - pos.sum(1)
        if self.neg_sampler == "random":
            return pos, random_sample(assign.neg, num_neg, generator)
        upper = None
        if self.bin_range == "all":
            upper = assign.max_iou.masked_fill(~valid, 0).amax(1)
        neg = iou_balanced_neg_mask(assign.max_iou, assign.neg, num_neg, self.num_bins, self.floor_thr,
                                    self.floor_fraction, upper, generator)
        return pos, neg

    @torch.no_grad()
    def __call__(self, proposals: Tensor, valid: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor,
                 num_classes: int, generator: torch.Generator | None = None) -> RoISamples:
        """Sample the RoIs of a batch: ``proposals`` ``(B, P, 4)`` with ``valid`` ``(B, P)``; padded ground
        truths ``(B, G, 4)``, labels ``(B, G)``, ``gt_valid`` ``(B, G)``. Returns :class:`RoISamples` with
        ``S = min(num, N)`` slots per image."""
        cand, cand_valid, a = self.assign(proposals, valid, gt_boxes, gt_valid)
        pos, neg = self.sample(a, cand_valid, gt_boxes.shape[1], generator)
        sampled = pos | neg
        slots = sampled.float().topk(min(self.num, sampled.shape[1]), dim=1).indices  # sampled first
        take = lambda x: torch.gather(x, 1, slots if x.dim() == 2 else slots[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
        matched = take(a.matched_gt)
        labels = torch.gather(gt_labels, 1, matched)
        s_pos = take(pos)
        return RoISamples(
            rois=take(cand), labels=torch.where(s_pos, labels, torch.full_like(labels, num_classes)),
            matched_boxes=torch.gather(gt_boxes, 1, matched[..., None].expand(-1, -1, 4)),
            pos=s_pos, valid=take(sampled), max_iou=take(a.max_iou), index=slots,
        )
