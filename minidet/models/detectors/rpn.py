"""Region Proposal Network (Faster R-CNN, Ren et al., NeurIPS 2015, Sec. 3.1) on an FPN (Lin et al. 2017, Sec. 4.1).

https://arxiv.org/abs/1506.01497

Training: anchors are assigned by max IoU (positive at ``IoU >= 0.7``, negative below 0.3, and each ground
truth claims its best anchors down to 0.3), 256 anchors per image are sampled at random with at most half
positives, and the loss is binary cross-entropy on objectness plus smooth L1 on the positives' deltas,
both divided by the number of sampled anchors (Eq. 1). Proposals: per level the top-k anchors by
objectness are decoded, clipped, suppressed by NMS level by level, and the best ``post_nms_top_n`` of
each image are kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from minidet.assigners.crowd import CrowdRegions
from minidet.assigners.max_iou import MaxIoUAssigner
from minidet.boxes.coders import DeltaXYWHCoder
from minidet.boxes.ops import clip_boxes
from minidet.losses.regression import smooth_l1_loss
from minidet.models.anchors import AnchorGenerator
from minidet.samplers.random_sampling import random_sample, sample_pos_neg


def select_proposals(
    objectness: Tensor,
    boxes: Tensor,
    level_sizes: list[int],
    image_sizes: Tensor,
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms_thresh: float = 0.7,
    min_size: float = 1e-3,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-level top-k, clipping, per-level NMS and the best ``post_nms_top_n`` of each image, batched.

    Args:
        objectness: ``(B, A)`` logits; boxes: ``(B, A, 4)`` decoded xyxy; level_sizes: anchors per level.
        image_sizes: ``(B, 2)`` un-padded ``(H, W)``.

    Returns:
        ``proposals`` ``(B, P, 4)``, ``scores`` ``(B, P)`` (objectness probabilities, decreasing) and
        ``valid`` ``(B, P)`` bool, with ``P = post_nms_top_n``; rows are padded where an image has fewer.
    """
    bsz, dev = objectness.shape[0], objectness.device
    cand_s, cand_b, cand_l = [], [], []
    for lvl, (s, b) in enumerate(zip(objectness.split(level_sizes, 1), boxes.split(level_sizes, 1))):
        top, idx = s.topk(min(pre_nms_top_n, s.shape[1]), dim=1)  # (B, k)
        cand_s.append(top)
        cand_b.append(torch.gather(b, 1, idx[..., None].expand(-1, -1, 4)))
        cand_l.append(torch.full_like(idx, lvl))
    scores = torch.sigmoid(torch.cat(cand_s, 1).float())  # (B, K)
    cand = clip_boxes(torch.cat(cand_b, 1).float(), image_sizes)  # (B, K, 4)
    wh = cand[..., 2:] - cand[..., :2]
    ok = (wh >= min_size).all(-1)
    img = torch.arange(bsz, device=dev)[:, None].expand_as(scores)
    group = img * len(level_sizes) + torch.cat(cand_l, 1)
    flat_ok = ok.reshape(-1).nonzero().squeeze(1)
    kept = flat_ok[batched_nms(cand.reshape(-1, 4)[flat_ok], scores.reshape(-1)[flat_ok], group.reshape(-1)[flat_ok], nms_thresh)]
    # kept is sorted by decreasing score; the first post_nms_top_n of each image survive
    kept_img = kept // scores.shape[1]
    order = torch.sort(kept_img, stable=True).indices
    kept, kept_img = kept[order], kept_img[order]
    counts = torch.bincount(kept_img, minlength=bsz)
    rank = torch.arange(len(kept), device=dev) - (counts.cumsum(0) - counts)[kept_img]
    sel = rank < post_nms_top_n
    proposals = torch.zeros(bsz, post_nms_top_n, 4, device=dev)
    out_scores = torch.zeros(bsz, post_nms_top_n, device=dev)
    valid = torch.zeros(bsz, post_nms_top_n, dtype=torch.bool, device=dev)
    at = (kept_img[sel], rank[sel])
    proposals[at] = cand.reshape(-1, 4)[kept[sel]]
    out_scores[at] = scores.reshape(-1)[kept[sel]]
    valid[at] = True
    return proposals, out_scores, valid


class RegionProposalNetwork(nn.Module):
    """Anchors + :class:`~minidet.models.heads.RPNHead` + assignment, sampling, loss and proposals.

    Args:
        head: an :class:`~minidet.models.heads.RPNHead`; anchor_generator: one anchor size per level
            (Faster R-CNN + FPN: ``8 x stride``, three ratios).
        assigner: default ``MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3)``.
        num_samples, pos_fraction: anchors sampled per image (256) and the positives' share (0.5).
        pre_nms_top_n, post_nms_top_n: ``(train, test)`` candidates per level before NMS (2000, 1000) and
            proposals per image after it (1000, 1000), mmdetection's Faster R-CNN settings.
        nms_thresh: 0.7. box_beta: smooth L1 threshold on the deltas (1/9).
    """

    def __init__(self, head: nn.Module, anchor_generator: AnchorGenerator, assigner: MaxIoUAssigner | None = None,
                 num_samples: int = 256, pos_fraction: float = 0.5, pre_nms_top_n: tuple[int, int] = (2000, 1000),
                 post_nms_top_n: tuple[int, int] = (1000, 1000), nms_thresh: float = 0.7, box_beta: float = 1.0 / 9) -> None:
        super().__init__()
        self.head, self.anchor_generator = head, anchor_generator
        self.assigner = assigner or MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3)
        self.box_coder = DeltaXYWHCoder()
        self.num_samples, self.pos_fraction = num_samples, pos_fraction
        self.pre_nms_top_n, self.post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_thresh, self.box_beta = nms_thresh, box_beta

    def forward(self, feats: list[Tensor], image_sizes: Tensor, gt: tuple[Tensor, Tensor] | None = None,
                crowd: CrowdRegions | None = None) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """``feats``: the pyramid, finest first. ``gt``: padded ``(boxes (B, G, 4), valid (B, G))`` in training;
        ``crowd``: the batch's crowd regions, whose anchors are never sampled as negatives.

        Returns ``proposals`` ``(B, P, 4)`` (detached), their ``scores`` and ``valid`` ``(B, P)``, and the
        losses ``{"loss_rpn_cls", "loss_rpn_box"}`` (empty without ``gt``).
        """
        objectness, deltas = self.head(feats)  # (B, A), (B, A, 4)
        anchors_l = self.anchor_generator([f.shape[-2:] for f in feats], objectness.device)
        anchors = torch.cat(anchors_l)
        boxes = self.box_coder.decode(anchors[None], deltas.detach().float())
        phase = 0 if self.training else 1
        proposals, scores, valid = select_proposals(objectness.detach(), boxes, [len(a) for a in anchors_l], image_sizes,
                                                    self.pre_nms_top_n[phase], self.post_nms_top_n[phase], self.nms_thresh)
        losses = self.loss(objectness, deltas, anchors, *gt, crowd=crowd) if gt is not None else {}
        return proposals, scores, valid, losses

    def loss(self, objectness: Tensor, deltas: Tensor, anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor,
             crowd: CrowdRegions | None = None) -> dict[str, Tensor]:
        """Eq. (1) of Faster R-CNN over the sampled anchors, both terms divided by their number; anchors inside
        a ``crowd`` region are neither positives nor negatives."""
        assign = self.assigner.assign(anchors, gt_boxes, gt_valid)
        neg = crowd.negatives(anchors, assign.neg) if crowd is not None else assign.neg
        pos, num_neg, _ = sample_pos_neg(assign.pos, neg, self.num_samples, self.pos_fraction)
        sampled = pos | random_sample(neg, num_neg)
        norm = sampled.sum().clamp(min=1).float()
        bce = F.binary_cross_entropy_with_logits(objectness.float(), pos.float(), reduction="none")
        matched = torch.gather(gt_boxes, 1, assign.matched_gt[..., None].expand(-1, -1, 4))
        reg = smooth_l1_loss(deltas.float(), self.box_coder.encode(anchors[None], matched), beta=self.box_beta).sum(-1)
        zero = torch.zeros((), device=bce.device)
        return {"loss_rpn_cls": torch.where(sampled, bce, zero).sum() / norm,
                "loss_rpn_box": torch.where(pos, reg, zero).sum() / norm}
