"""What every dense (one-stage) detector shares: normalisation, backbone -> neck -> head, level
bookkeeping and post-processing. Subclasses say how targets are made and losses computed."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from minidet.losses.levels import level_index
from minidet.models.postprocess import postprocess_dense

# ImageNet statistics in [0, 1] units; the models take images in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DenseDetector(nn.Module, ABC):
    """Base class: ``forward(images, targets)`` -> dict of losses (training) or detections (eval).

    Args:
        backbone: returns ``{"c2": ..., "c5": ...}`` (see :mod:`minidet.models.backbones`).
        neck: e.g. :class:`minidet.models.necks.FPN`, fed with ``in_features`` of the backbone.
        head: returns per-element predictions for the concatenated levels.
        num_classes: number of object classes ``C``.
        in_features: backbone features given to the neck, finest first.
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
        score_thresh: float = 0.05,
        topk_per_level: int = 1000,
        nms_thresh: float = 0.5,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.num_classes = num_classes
        self.in_features = in_features
        self.score_thresh, self.topk_per_level = score_thresh, topk_per_level
        self.nms_thresh, self.max_detections = nms_thresh, max_detections
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._levels: dict[tuple, Tensor] = {}

    @property
    def strides(self) -> tuple[int, ...]:
        return self.neck.strides

    def features(self, images: Tensor) -> list[Tensor]:
        """``images`` ``(B, 3, H, W)`` in [0, 1] -> neck outputs, finest first."""
        x = (images - self.pixel_mean) / self.pixel_std
        feats = self.backbone(x)
        return self.neck([feats[k] for k in self.in_features])

    def level_index(self, level_sizes: list[int], device: torch.device) -> Tensor:
        """Cached ``(A,)`` level of every element (see :func:`minidet.losses.level_index`)."""
        key = (tuple(level_sizes), str(device))
        if key not in self._levels:
            self._levels[key] = level_index(level_sizes, device)
        return self._levels[key]

    def forward(
        self, images: Tensor, targets: list[dict[str, Tensor]] | None = None, image_sizes: Tensor | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Train: ``targets`` (one dict per image with ``boxes`` ``(N, 4)`` xyxy and ``labels`` ``(N,)``)
        -> dict of losses; keys starting with ``loss_`` are scalars that add up to the training loss, the
        others are per-level components and statistics. Eval -> one detections dict per image.

        ``image_sizes`` ``(B, 2)`` gives each image's un-padded ``(H, W)`` (default: the padded size).
        """
        if image_sizes is None:
            image_sizes = torch.tensor([images.shape[-2:]] * images.shape[0], device=images.device)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode (call model.eval() for inference)")
            return self.loss(images, targets, image_sizes)
        return self.predict(images, image_sizes)

    @abstractmethod
    def loss(self, images: Tensor, targets: list[dict[str, Tensor]], image_sizes: Tensor) -> dict[str, Tensor]:
        """Assign targets and compute the training losses of a batch."""

    @abstractmethod
    def predict_dense(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, list[int]]:
        """Return ``scores`` ``(B, A, C)``, decoded ``boxes`` ``(B, A, 4)`` and the level sizes."""

    @torch.no_grad()
    def predict(self, images: Tensor, image_sizes: Tensor) -> list[dict[str, Tensor]]:
        scores, boxes, level_sizes = self.predict_dense(images, image_sizes)
        return postprocess_dense(
            scores.float(), boxes.float(), level_sizes, image_sizes,
            self.score_thresh, self.topk_per_level, self.nms_thresh, self.max_detections,
        )
