"""What every minidet detector shares: images in [0, 1] are normalised with ImageNet statistics, and
``forward`` returns losses in training mode and detections in eval mode."""
from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor, nn

# ImageNet statistics in [0, 1] units; the models take images in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Detector(nn.Module):
    """Base class: ``forward(images, targets)`` -> dict of losses (training) or detections (eval).

    Subclasses set ``backbone``, ``neck`` and ``in_features`` and implement :meth:`loss` and :meth:`predict`;
    :meth:`normalize` maps ``(B, 3, H, W)`` images in [0, 1] to the backbone's input and :meth:`features` runs
    backbone and neck.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        return (images - self.pixel_mean) / self.pixel_std

    @property
    def device(self) -> torch.device:
        """Where the weights are: the plotting helpers move their inputs here, since a model the trainer
        moved to CUDA cannot take a CPU batch."""
        return self.pixel_mean.device

    @property
    def strides(self) -> tuple[int, ...]:
        """Stride of each pyramid level the neck returns."""
        return self.neck.strides

    def features(self, images: Tensor) -> list[Tensor]:
        """``images`` ``(B, 3, H, W)`` in [0, 1] -> the neck's pyramid, finest first (the subclass sets
        ``backbone``, ``neck`` and ``in_features``, the backbone outputs the neck reads)."""
        feats = self.backbone(self.normalize(images))
        return self.neck([feats[k] for k in self.in_features])

    def forward(
        self, images: Tensor, targets: list[dict[str, Tensor]] | None = None, image_sizes: Tensor | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Train: ``targets`` (one dict per image with ``boxes`` ``(N, 4)`` xyxy and ``labels`` ``(N,)``)
        -> dict of losses; keys starting with ``loss_`` are scalars that add up to the training loss, the
        others are statistics. Eval -> one detections dict per image (``boxes``, ``scores``, ``labels``).

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
    def predict(self, images: Tensor, image_sizes: Tensor) -> list[dict[str, Tensor]]:
        """Detections of a batch."""
