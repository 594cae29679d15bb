"""What every dense (one-stage) detector shares: normalisation, backbone -> neck -> head, the
classification loss (focal or Progressive Focal Loss, pooled or level-wise normalised), level
bookkeeping and post-processing. Subclasses say how targets are made and the other losses computed."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from minidet.distributed import loss_normalizer
from minidet.losses.focal import FocalLoss
from minidet.losses.levels import level_index, sum_per_level
from minidet.losses.lrp import lrp_form, normalize_level_losses
from minidet.losses.pfl import ProgressiveFocalLoss
from minidet.models.detectors.base import Detector
from minidet.models.postprocess import postprocess_dense

CLS_LOSSES = ("focal", "pfl", "pfl_official")


def build_cls_loss(cls_loss: str | nn.Module, focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> nn.Module:
    """``"focal"`` -> :class:`FocalLoss` ``(focal_alpha, focal_gamma)``; ``"pfl"`` ->
    :class:`ProgressiveFocalLoss` centred on ``focal_gamma`` (UMOP defaults ``delta = w = 0.5``; its
    ``alpha`` is ``w / gamma_ad``, so ``focal_alpha`` is unused) with ``gamma_ad = -log(mean p)`` as the paper's
    Eq. 4 writes it; ``"pfl_official"`` -> the same loss with the authors' code's ``gamma_ad = mean(-log p)``
    (``variant="official"``, see :mod:`minidet.losses.pfl`); a module is used as is. A module must
    follow :class:`FocalLoss`'s interface.

    Both are built ``fused=True``: the detector only needs the loss summed over classes, so the fused
    loss (:func:`~minidet.losses.fused_sigmoid_focal_loss`: Triton on CUDA, cache-sized blocks on a CPU)
    computes it and its gradient in one pass, without one-hot targets or a ``(B, A, C)`` loss; the same
    values as the per-element form up to rounding (tested). Pass ``FocalLoss()`` for the per-element form."""
    if isinstance(cls_loss, nn.Module):
        return cls_loss
    if cls_loss == "focal":
        return FocalLoss(focal_alpha, focal_gamma, fused=True)
    if cls_loss in ("pfl", "pfl_official"):
        return ProgressiveFocalLoss(gamma=focal_gamma, variant="paper" if cls_loss == "pfl" else "official", fused=True)
    raise ValueError(f"cls_loss must be one of {CLS_LOSSES} or an nn.Module, got {cls_loss!r}")


class DenseDetector(Detector, ABC):
    """Base class of the one-stage detectors (``forward`` and normalisation: :class:`Detector`).

    Args:
        backbone: returns ``{"c2": ..., "c5": ...}`` (see :mod:`minidet.models.backbones`).
        neck: e.g. :class:`minidet.models.necks.FPN`, fed with ``in_features`` of the backbone.
        head: returns per-element predictions for the concatenated levels.
        num_classes: number of object classes ``C``.
        in_features: backbone features given to the neck, finest first.
        cls_loss: ``"focal"``, ``"pfl"`` (Progressive Focal Loss, UMOP Eq. 3-5) or a module, see
            :func:`build_cls_loss`.
        level_resampling: how the classification loss is normalised over pyramid levels (UMOP Eq. 1,
            :mod:`minidet.losses.lrp`): ``"pooled"`` (default; alias ``False``) divides by the batch's
            positives; ``"own_positives"`` (alias ``True``), minidet's *interpretation* of Eq. 1, divides each
            level by its own positives and averages the levels; ``"code"``, the authors' released code,
            divides each level by the total positives and sums them, which equals ``"pooled"``.
            ``cls_loss="pfl"`` with ``"code"`` is UMOP as released; with ``"own_positives"``, UMOP as minidet
            reads the paper.
        focal_alpha, focal_gamma: focal-loss parameters (0.25, 2); ``focal_gamma`` also centres PFL.
        score_thresh, topk_per_level, nms_thresh, max_detections: inference settings
            (RetinaNet: 0.05, 1000, 0.5, 100).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: nn.Module,
        head: nn.Module,
        num_classes: int,
        in_features: tuple[str, ...] = ("c3", "c4", "c5"),
        cls_loss: str | nn.Module = "focal",
        level_resampling: bool | str = "pooled",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        score_thresh: float = 0.05,
        topk_per_level: int = 1000,
        nms_thresh: float = 0.5,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.num_classes = num_classes
        self.in_features = in_features
        self.cls_loss = build_cls_loss(cls_loss, focal_alpha, focal_gamma)
        self.level_norm = lrp_form(level_resampling)  # one of LRP_FORMS
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.score_thresh, self.topk_per_level = score_thresh, topk_per_level
        self.nms_thresh, self.max_detections = nms_thresh, max_detections
        self._levels: dict[tuple, Tensor] = {}

    @property
    def level_resampling(self) -> bool:
        """Whether the level-wise resampling of UMOP is on, in either reading (``level_norm`` says which)."""
        return self.level_norm != "pooled"

    def level_index(self, level_sizes: list[int], device: torch.device) -> Tensor:
        """Cached ``(A,)`` level of every element (see :func:`minidet.losses.level_index`)."""
        key = (tuple(level_sizes), str(device))
        if key not in self._levels:
            self._levels[key] = level_index(level_sizes, device)
        return self._levels[key]

    def level_sizes_tensor(self, level_sizes: list[int], device: torch.device) -> Tensor:
        """Cached ``(L,)`` float32 elements per level: copied to the device once per input size, since a
        host-to-device copy inside the step would wait for the device."""
        key = ("sizes", tuple(level_sizes), str(device))
        if key not in self._levels:
            self._levels[key] = torch.tensor(level_sizes, dtype=torch.float32, device=device)
        return self._levels[key]

    def classification_loss(
        self, cls_logits: Tensor, labels: Tensor, pos: Tensor, valid: Tensor, levels: Tensor, num_levels: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The normalised classification loss, level by level.

        A fused loss module (``fused=True``) takes the class indices as they are (``-1`` for background);
        the others get one-hot targets (:meth:`class_targets`), built only for them.

        Args:
            cls_logits: ``(B, A, C)`` logits (any float dtype; computed in float32).
            labels: ``(B, A)`` int64 class of each element's matched ground truth (read where ``pos``).
            pos, valid: ``(B, A)`` bool: positives; samples that count (positives and negatives).
            levels: ``(A,)`` level of each element; ``num_levels``: ``L``.

        Returns:
            ``(L,)`` parts that sum to the loss (normalised as :attr:`level_norm` says, see
            :func:`~minidet.losses.normalize_level_losses`) and statistics to log: the loss module's, and
            ``levels/pos_prob``, the mean predicted probability of the true class at each level's
            positives (0 for a level without positives).
        """
        logits = cls_logits.float()
        if getattr(self.cls_loss, "fused", False):
            targets = torch.where(pos, labels, -1)  # (B, A) class indices, -1 for background
        else:
            targets = self.class_targets(labels, pos, logits)  # (B, A, C) one-hot
        loss, stats = self.cls_loss(logits, targets, pos, levels, num_levels)
        loss = torch.where(valid[..., None], loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
        level_pos = sum_per_level(pos.float(), levels, num_levels)
        with torch.no_grad():  # how well each level already classifies its positives: what PFL reacts to
            p_true = torch.sigmoid(logits.gather(-1, labels.clamp(min=0)[..., None]))[..., 0] * pos  # (B, A)
            stats = {**stats, "levels/pos_prob": sum_per_level(p_true, levels, num_levels) / level_pos.clamp(min=1)}
        return normalize_level_losses(sum_per_level(loss, levels, num_levels), level_pos, self.level_norm), stats

    @staticmethod
    def class_targets(labels: Tensor, pos: Tensor, like: Tensor) -> Tensor:
        """One-hot classification targets ``(B, A, C)`` in ``like``'s dtype: 1 at ``labels`` where ``pos``,
        zero rows elsewhere (one write pass; ``F.one_hot`` would build an int64 tensor first)."""
        return torch.zeros_like(like).scatter_(-1, labels[..., None], pos[..., None].to(like.dtype))

    @staticmethod
    def num_positives(pos: Tensor) -> Tensor:
        """``max(1, positives)`` of the batch, pooled over processes (divided by their number, as DDP
        averages gradients; :func:`~minidet.distributed.loss_normalizer`): the usual loss normaliser."""
        return loss_normalizer(pos.sum().float())

    def loss_dict(
        self, level_parts: dict[str, Tensor], pos: Tensor, neg: Tensor, levels: Tensor, level_sizes: list[int]
    ) -> dict[str, Tensor]:
        """Assemble the loss dict every dense detector returns.

        ``level_parts`` maps a name (``"cls"``, ``"box"``, ...) to its ``(L,)`` per-level parts: the dict
        gets ``loss_<name>`` (their sum, the training loss) and ``levels/loss_<name>`` (detached), plus
        ``levels/num_pos``, ``levels/num_neg`` and ``levels/pos_fraction`` (positives among all elements
        of the level in this batch, the statistic of UMOP's Fig. 2), all ``(L,)`` and on device.
        """
        num_levels = len(level_sizes)
        out = {f"loss_{k}": v.sum() for k, v in level_parts.items()}
        out.update({f"levels/loss_{k}": v.detach() for k, v in level_parts.items()})
        pos_levels = sum_per_level(pos.float(), levels, num_levels)
        total = self.level_sizes_tensor(level_sizes, pos.device) * pos.shape[0]
        out["levels/num_pos"] = pos_levels
        out["levels/num_neg"] = sum_per_level(neg.float(), levels, num_levels)
        out["levels/pos_fraction"] = pos_levels / total
        return out

    @abstractmethod
    def predict_dense(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, list[int]]:
        """Return ``scores`` ``(B, A, C)``, decoded ``boxes`` ``(B, A, 4)`` and the level sizes."""

    # True when predict_dense has already applied the score threshold itself (scores 0 where it failed), as the
    # ATSS authors' inference does on the class score alone before multiplying by the centerness
    scores_prefiltered = False

    @torch.no_grad()
    def predict(self, images: Tensor, image_sizes: Tensor) -> list[dict[str, Tensor]]:
        scores, boxes, level_sizes = self.predict_dense(images, image_sizes)
        return postprocess_dense(
            scores.float(), boxes.float(), level_sizes, image_sizes,
            0.0 if self.scores_prefiltered else self.score_thresh, self.topk_per_level, self.nms_thresh,
            self.max_detections,
        )
