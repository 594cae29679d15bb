"""Batching detection samples of different sizes into one padded tensor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class ImageBatch:
    """A batch of B images padded to a common size.

    Attributes:
        images: (B, 3, Hp, Wp) float32; image ``b`` fills ``[:, :H_b, :W_b]``, zeros elsewhere
            (bottom/right padding, so box coordinates need no shift). Hp, Wp are multiples of the
            ``size_divisible`` used by :func:`collate_detection`.
        image_sizes: (B, 2) int64, the (H_b, W_b) of each image before padding.
        targets: B dicts of plain tensors: ``boxes`` (N_b, 4) float32 XYXY, ``labels`` (N_b,) int64,
            ``image_id`` int, ``orig_size`` (2,) int64 (H0, W0) of the file.
    """

    images: Tensor
    image_sizes: Tensor
    targets: list[dict[str, Any]]

    def __len__(self) -> int:
        return self.images.shape[0]

    def _map(self, fn: Any) -> ImageBatch:
        """A new batch with ``fn`` applied to every tensor (images, sizes, and each target's tensors)."""
        targets = [{k: fn(v) if isinstance(v, Tensor) else v for k, v in t.items()} for t in self.targets]
        return ImageBatch(fn(self.images), fn(self.image_sizes), targets)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ImageBatch:
        """Copy of the batch on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> ImageBatch:
        """Copy in pinned host memory; ``DataLoader(pin_memory=True)`` calls this on custom batches."""
        return self._map(lambda t: t.pin_memory())


def pad_images(images: list[Tensor], size_divisible: int = 32) -> tuple[Tensor, Tensor]:
    """Pad images ``(3, H_b, W_b)`` at the bottom and right into one ``(B, 3, Hp, Wp)`` tensor with Hp, Wp
    multiples of ``size_divisible``; returns it and the ``(B, 2)`` int64 un-padded sizes."""
    images = [img.as_subclass(Tensor) for img in images]
    sizes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.int64)  # (B, 2)
    hp, wp = (-(-sizes.max(0).values // size_divisible) * size_divisible).tolist()
    padded = images[0].new_zeros((len(images), images[0].shape[0], hp, wp))  # (B, 3, Hp, Wp)
    for b, img in enumerate(images):
        padded[b, :, : img.shape[1], : img.shape[2]] = img
    return padded, sizes


def collate_detection(batch: list[tuple[Tensor, dict[str, Any]]], size_divisible: int = 32) -> ImageBatch:
    """Pad ``(image, target)`` samples into an :class:`ImageBatch`.

    Args:
        batch: samples with ``image`` (3, H_b, W_b) float and ``target`` as produced by
            :class:`minidet.data.CocoDetection` (tv_tensors are unwrapped to plain tensors).
        size_divisible: Hp and Wp are rounded up to a multiple of this (the largest backbone stride),
            so every feature map of an FPN has an integer size.
    """
    if not batch:
        raise ValueError("collate_detection: empty batch")
    padded, sizes = pad_images([img for img, _ in batch], size_divisible)
    targets = []
    for _, t in batch:
        t = dict(t)
        t["boxes"] = t["boxes"].as_subclass(Tensor).float()
        t["labels"] = t["labels"].as_subclass(Tensor).long()
        targets.append(t)
    return ImageBatch(padded, sizes, targets)
