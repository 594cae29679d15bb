"""Dual Weighting (Li et al., "A Dual Weighting Label Assignment Scheme for Object Detection", CVPR 2022)
on FCOS.

https://arxiv.org/abs/2203.09730
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from minidet.assigners import dw_weights as dw
from minidet.assigners.chunks import gt_chunks
from minidet.boxes.coders import LTRBCoder
from minidet.boxes.ops import batched_box_iou, pad_targets
from minidet.losses.dual_weighting import dw_neg_loss, dw_normalizers, dw_pos_losses
from minidet.losses.levels import sum_per_level
from minidet.losses.lrp import lrp_form
from minidet.losses.regression import giou_loss
from minidet.models.detectors.dense import DenseDetector
from minidet.models.points import PointGenerator


class DualWeighting(DenseDetector):
    """Backbone + FPN (P3-P7) + :class:`~minidet.models.heads.DWHead` (FCOS towers, objectness, box
    refinement), one point per cell, and no hard assignment: every point inside a ground truth ``g`` is
    weighted as a positive of ``g`` and as a negative of ``g``'s class (:mod:`minidet.assigners.dw_weights`),
    with the losses of :mod:`minidet.losses.dual_weighting`. Score at inference:
    :math:`s = \\sigma(\\mathrm{cls})\\,\\sigma(\\mathrm{obj})`.

    All weights are computed for the whole batch at once, as ``(B, A, G)`` tensors (the authors loop
    over images and, for ``P_neg``, over ground truths in Python). ``IoU`` for ``P_neg`` is taken without
    gradient; ``p_cls`` and ``p_loc`` carry gradients into the losses, while ``w_pos`` and ``P_neg``
    are detached.

    Loss dict: ``loss_cls_pos``, ``loss_box`` (the localisation term, ``beta x GIoU`` weighted by
    ``w_pos``) and ``loss_cls_neg`` (the authors' ``loss_cls_pos``, ``loss_loc``, ``loss_cls_neg``), their
    ``levels/...`` parts, and ``levels/num_pos`` counting the candidate points of each level (non-zero
    centre prior for some ground truth; every other point only counts as a negative).

    Choices where sources differ, each ``"code"`` (the default: it produced the published results) or
    ``"paper"``:

    * ``pos_weight_form``: ``"code"`` weights by :math:`v = p_{cls}\\,e^{-5\\ell_{GIoU}}` with exponents 5
      over 3 (:func:`~minidet.assigners.dw_weights.consistency`); ``"paper"`` by the paper's
      :math:`t = s^{\\beta} u^{1-\\beta}` (``consistency_beta``, ``u`` the IoU of the predicted box) and
      :math:`e^{\\mu t} t` normalised to sum 1 (:func:`~minidet.assigners.dw_weights.paper_consistency`,
      :func:`~minidet.assigners.dw_weights.dw_pos_weight`). Both multiply by the centre prior, which the
      paper leaves implicit (``soft_prior=False, prior_threshold=0`` makes it the plain inside-the-box set).
    * ``neg_prob_form``: ``"code"`` rescales a curve over each ground truth's candidates; ``"paper"`` is
      the fixed curve through ``(0.5, 1)`` and ``(0.95, 0)`` (:func:`~minidet.assigners.dw_weights.neg_prob`).

    The losses themselves (:mod:`minidet.losses.dual_weighting`) are the code's in both forms. Where
    same-class ground truths share a point, ``P_neg`` takes the minimum
    (:func:`~minidet.assigners.dw_weights.neg_prob_per_class`).

    Args:
        backbone, neck, head: see :class:`DenseDetector`; ``head`` returns logits, distances, objectness.
        point_generator: points for the neck's strides.
        num_classes: ``C``.
        pos_weight_form, mu, mu_denominator: positive weighting (``"code"``, 5, 3; ``mu_denominator`` only
            for ``"code"``); consistency_beta: ``beta`` of the paper's consistency (0.8, ``"paper"`` only).
        soft_prior, prior_sigma, prior_threshold: centre prior (soft, 1.11, 0.3 when binarised).
        beta: ``p_loc = exp(-beta * GIoU loss)`` (5).
        neg_prob_form, neg_iou_threshold, gamma1, gamma2: negative weighting (``"code"``, 0.5, 2, 2);
            neg_iou_upper: where the paper's ``P_neg`` reaches 0 (0.95, ``"paper"`` only).
        pos_loss_weight: ``lambda`` on both positive losses (0.25).
        gt_chunk: ground truths weighted at once in :meth:`loss` (default: as many as
            :data:`~minidet.assigners.chunks.MAX_PAIRS` allows; the same losses up to float rounding).
        **kwargs: inference settings for :class:`DenseDetector` (``nms_thresh`` defaults to DW's 0.6).
            DW has its own classification loss: ``cls_loss`` must stay ``"focal"`` (unused) and
            ``level_resampling`` ``"pooled"`` (or ``False``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        point_generator: PointGenerator,
        num_classes: int,
        pos_weight_form: str = "code",
        mu: float = 5.0,
        mu_denominator: float = 3.0,
        consistency_beta: float = 0.8,
        soft_prior: bool = True,
        prior_sigma: float = 1.11,
        prior_threshold: float = 0.3,
        beta: float = 5.0,
        neg_prob_form: str = "code",
        neg_iou_threshold: float = 0.5,
        gamma1: float = 2.0,
        gamma2: float = 2.0,
        neg_iou_upper: float = 0.95,
        pos_loss_weight: float = 0.25,
        gt_chunk: int | None = None,
        **kwargs,
    ) -> None:
        if kwargs.get("cls_loss", "focal") != "focal" or lrp_form(kwargs.get("level_resampling", False)) != "pooled":
            raise ValueError("DualWeighting has its own weighted classification loss: cls_loss='pfl' and "
                             "level_resampling do not apply to it")
        for name, form in (("pos_weight_form", pos_weight_form), ("neg_prob_form", neg_prob_form)):
            if form not in dw.FORMS:
                raise ValueError(f"{name} must be one of {dw.FORMS}, got {form!r}")
        kwargs.setdefault("nms_thresh", 0.6)
        super().__init__(backbone, neck, head, num_classes, **kwargs)
        if tuple(point_generator.strides) != tuple(neck.strides):
            raise ValueError(f"point strides {point_generator.strides} differ from the neck's {neck.strides}")
        self.point_generator = point_generator
        self.box_coder = LTRBCoder(normalize=True)
        self.pos_weight_form, self.mu, self.mu_denominator = pos_weight_form, mu, mu_denominator
        self.consistency_beta, self.neg_iou_upper = consistency_beta, neg_iou_upper
        self.soft_prior, self.prior_sigma, self.prior_threshold = soft_prior, prior_sigma, prior_threshold
        self.beta, self.neg_prob_form = beta, neg_prob_form
        self.neg_iou_threshold, self.gamma1, self.gamma2 = neg_iou_threshold, gamma1, gamma2
        self.pos_loss_weight = pos_loss_weight
        self.gt_chunk = gt_chunk

    def dense_outputs(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, list[int]]:
        """Joint ``scores`` ``(B, A, C)`` (float32 probabilities, with gradient), decoded ``boxes``
        ``(B, A, 4)``, points ``(A, 2)``, their strides ``(A,)`` and the level sizes."""
        feats = self.features(images)
        cls_logits, distances, obj_logits = self.head(feats)
        points, strides, level_sizes = self.point_generator.grid([f.shape[-2:] for f in feats], images.device)
        scores = torch.sigmoid(cls_logits.float()) * torch.sigmoid(obj_logits.float())[..., None]
        boxes = self.box_coder.decode(points[None], distances.float(), strides[None])
        return scores, boxes, points, strides, level_sizes

    def weights(self, scores: Tensor, boxes: Tensor, points: Tensor, strides: Tensor, gt_boxes: Tensor,
                gt_labels: Tensor, gt_valid: Tensor) -> dict[str, Tensor]:
        """Every intermediate map of the dual weighting, for a batch (what :meth:`loss` trains with, and
        what the lessons draw).

        Args:
            scores: ``(B, A, C)`` ``s = sigmoid(cls) * sigmoid(obj)``; boxes: ``(B, A, 4)`` decoded boxes;
                points ``(A, 2)``, strides ``(A,)``; padded ground truths ``(B, G, 4)``, ``(B, G)``, ``(B, G)``.

        Returns:
            ``p_cls``, ``p_loc``, ``prior``, ``w_pos``, ``iou``, ``inside``: ``(B, A, G)``; ``p_neg``,
            ``w_neg``: ``(B, A, C)``. ``iou``, ``inside`` and ``p_neg`` carry no gradient.
        """
        m = {**self._pos_maps(scores, boxes, points, strides, gt_boxes, gt_labels, gt_valid),
             **self._neg_maps(boxes, points, gt_boxes, gt_labels, gt_valid)}
        return {**m, "w_neg": dw.dw_neg_weight(m["p_neg"], scores, self.gamma2)}

    def _pos_maps(self, scores: Tensor, boxes: Tensor, points: Tensor, strides: Tensor, gt_boxes: Tensor,
                  gt_labels: Tensor, gt_valid: Tensor) -> dict[str, Tensor]:
        """``p_cls``, ``p_loc`` (with gradient), ``prior`` and ``w_pos``, all ``(B, A, G)``: everything per
        (point, ground truth), so a chunk of ground truths gives its own columns."""
        b, a, g = scores.shape[0], scores.shape[1], gt_boxes.shape[1]
        # Padding boxes become a unit box so GIoU stays finite (their pairs get zero weight anyway).
        unit = (torch.arange(4, device=gt_boxes.device) >= 2).to(gt_boxes.dtype)  # (0, 0, 1, 1), made on the device
        safe_gt = torch.where(gt_valid[..., None], gt_boxes, unit)
        reg = giou_loss(boxes[:, :, None].expand(b, a, g, 4), safe_gt[:, None].expand(b, a, g, 4))  # (B, A, G)
        p_loc = dw.localization_score(reg, self.beta)
        p_cls = torch.gather(scores, 2, gt_labels.clamp(min=0)[:, None].expand(b, a, g))  # (B, A, G)
        prior = dw.center_prior(points, strides, gt_boxes, gt_valid, self.prior_sigma, soft=self.soft_prior,
                                threshold=self.prior_threshold)
        if self.pos_weight_form == "paper":  # t = s^beta u^(1 - beta), u the IoU of the predicted box
            with torch.no_grad():
                v = dw.paper_consistency(p_cls, batched_box_iou(boxes, gt_boxes), self.consistency_beta)
        else:  # the code's v = p_cls * exp(-5 GIoU loss)
            v = dw.consistency(p_cls, p_loc)
        w_pos = dw.dw_pos_weight(v, prior, self.mu, self.pos_weight_form, self.mu_denominator)
        return {"p_cls": p_cls, "p_loc": p_loc, "prior": prior, "w_pos": w_pos}

    @torch.no_grad()
    def _neg_maps(self, boxes: Tensor, points: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor
                  ) -> dict[str, Tensor]:
        """``inside``, ``iou`` ``(B, A, G)`` and ``p_neg`` ``(B, A, C)`` (the minimum over these ground truths)."""
        inside = dw.inside_boxes(points, gt_boxes, gt_valid)
        iou = torch.where(inside, batched_box_iou(boxes, gt_boxes), 0.0)  # (B, A, G)
        p_neg_gt = dw.neg_prob(iou, inside, self.neg_iou_threshold, self.gamma1, self.neg_prob_form, self.neg_iou_upper)
        return {"iou": iou, "inside": inside, "p_neg": dw.neg_prob_per_class(p_neg_gt, gt_labels, self.num_classes)}

    def _pos_loss_sums(self, scores: Tensor, boxes: Tensor, points: Tensor, strides: Tensor, gt_boxes: Tensor,
                       gt_labels: Tensor, gt_valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Positive classification and localisation losses summed over the ground truths ``(B, A)`` each, and
        the candidate points ``(B, A)`` (non-zero prior for one of them)."""
        m = self._pos_maps(scores, boxes, points, strides, gt_boxes, gt_labels, gt_valid)
        cls_pos, loc = dw_pos_losses(m["p_cls"], m["p_loc"], m["w_pos"], self.pos_loss_weight)  # (B, A, G) each
        return cls_pos.sum(2), loc.sum(2), (m["prior"] > 0).any(dim=2)

    def loss(self, images: Tensor, targets: list[dict[str, Tensor]], image_sizes: Tensor) -> dict[str, Tensor]:
        scores, boxes, points, strides, level_sizes = self.dense_outputs(images)
        levels = self.level_index(level_sizes, images.device)
        gt_boxes, gt_labels, gt_valid = pad_targets(targets, images.device)
        parts, candidate = self.weighted_losses(scores, boxes, points, strides, gt_boxes, gt_labels, gt_valid, levels,
                                                len(level_sizes))
        return self.loss_dict(parts, candidate, ~candidate, levels, level_sizes)

    def weighted_losses(self, scores: Tensor, boxes: Tensor, points: Tensor, strides: Tensor, gt_boxes: Tensor,
                        gt_labels: Tensor, gt_valid: Tensor, levels: Tensor, num_levels: int
                        ) -> tuple[dict[str, Tensor], Tensor]:
        """Per-level parts of ``cls_pos``, ``box`` and ``cls_neg`` (each ``(L,)``) and the candidate points
        ``(B, A)`` bool, from the network's ``scores`` and ``boxes`` (arguments as :meth:`weights`).

        Crowded images go a chunk of ground truths at a time (:func:`~minidet.assigners.chunks.gt_chunks`):
        the positive losses add up over chunks and ``P_neg`` is their minimum, as over all ground truths at
        once; each chunk's positive branch is recomputed in the backward pass
        (:func:`torch.utils.checkpoint.checkpoint`), so only one chunk's ``(B, A, g)`` maps live at a time."""
        chunks = gt_chunks(gt_boxes.shape[1], scores.shape[0] * scores.shape[1], self.gt_chunk)
        cls_pos = loc = candidate = p_neg = None
        for sl in chunks:
            gt = (gt_boxes[:, sl], gt_labels[:, sl], gt_valid[:, sl])
            if len(chunks) == 1:
                sums = self._pos_loss_sums(scores, boxes, points, strides, *gt)
            else:
                sums = checkpoint(self._pos_loss_sums, scores, boxes, points, strides, *gt, use_reentrant=False)
            neg_c = self._neg_maps(boxes, points, *gt)["p_neg"]
            if cls_pos is None:
                (cls_pos, loc, candidate), p_neg = sums, neg_c
            else:
                cls_pos, loc, candidate, p_neg = cls_pos + sums[0], loc + sums[1], candidate | sums[2], torch.minimum(p_neg, neg_c)
        neg = dw_neg_loss(scores, dw.dw_neg_weight(p_neg, scores, self.gamma2))  # (B, A, C)
        num_gt, positiveness = dw_normalizers(gt_valid, p_neg)
        parts = {
            "cls_pos": sum_per_level(cls_pos, levels, num_levels) / num_gt,
            "box": sum_per_level(loc, levels, num_levels) / num_gt,
            "cls_neg": sum_per_level(neg, levels, num_levels) / positiveness,
        }
        return parts, candidate

    def predict_dense(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, list[int]]:
        scores, boxes, _, _, level_sizes = self.dense_outputs(images)
        return scores, boxes, level_sizes
