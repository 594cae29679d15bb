"""Box-aware augmentation built from ``torchvision.transforms.v2`` and ``tv_tensors``.

The transforms take and return ``(image, target)`` as produced by
:class:`minidet.data.CocoDetection`: v2 moves the ``tv_tensors.BoundingBoxes`` with the image and
passes plain entries (``labels``, ``image_id``, ``orig_size``) through untouched, except that
``SanitizeBoundingBoxes`` drops the ``labels`` of the boxes it removes.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from minidet.errors import ConfigError


class ResizeShorterSide(v2.Transform):
    """Resize so the shorter side is ``size * s`` and the longer side at most ``max_size * s``,
    keeping the aspect ratio, with ``s ~ U(scale_range)`` drawn once per sample.

    Scaling the cap by ``s`` too keeps jitter alive for square images (the shapes data, where
    ``max_size = size``): both sides become ``round(size * s)``.
    """

    def __init__(self, size: int, max_size: int | None = None,
                 scale_range: tuple[float, float] = (1.0, 1.0)) -> None:
        super().__init__()
        self.size = size
        self.max_size = size if max_size is None else max_size
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        lo, hi = self.scale_range
        s = lo + (hi - lo) * float(torch.rand(())) if hi > lo else lo
        ratio = min(self.size * s / min(h, w), self.max_size * s / max(h, w))
        return {"size": [max(1, round(h * ratio)), max(1, round(w * ratio))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, params["size"], antialias=True)


def build_transforms(train: bool, size: int, max_size: int | None = None, hflip: float = 0.5,
                     scale_jitter: tuple[float, float] | None = (0.8, 1.2)) -> v2.Compose:
    """Detection transforms for ``(image, target)`` samples.

    Train: random horizontal flip (probability ``hflip``), :class:`ResizeShorterSide` with scale
    jitter ``s ~ U(scale_jitter)``, then ``SanitizeBoundingBoxes(min_size=1)`` which drops boxes
    smaller than 1 px (and their labels and crowd flags). Eval: the deterministic resize with ``s = 1`` only.

    Args:
        train: training (random) or evaluation (deterministic) pipeline.
        size: target shorter side in pixels.
        max_size: cap of the longer side; default ``size`` (the image fits in a ``size`` square).
        hflip: flip probability in [0, 1].
        scale_jitter: ``(lo, hi)`` with ``0 < lo <= hi``, or None for no jitter.
    """
    if not (isinstance(size, int) and size > 0):
        raise ConfigError(f"build_transforms: size = {size!r} must be a positive int")
    if max_size is not None and not (isinstance(max_size, int) and max_size >= size):
        raise ConfigError(f"build_transforms: max_size = {max_size!r} must be an int >= size ({size})")
    if not 0 <= hflip <= 1:
        raise ConfigError(f"build_transforms: hflip = {hflip!r} must be a probability in [0, 1]")
    if scale_jitter is not None and not (len(scale_jitter) == 2 and 0 < scale_jitter[0] <= scale_jitter[1]
                                         and math.isfinite(scale_jitter[1])):
        raise ConfigError(f"build_transforms: scale_jitter = {scale_jitter!r} must be (lo, hi) with 0 < lo <= hi")
    if not train:
        return v2.Compose([ResizeShorterSide(size, max_size)])
    return v2.Compose([
        v2.RandomHorizontalFlip(p=hflip),
        ResizeShorterSide(size, max_size, scale_jitter or (1.0, 1.0)),
        v2.SanitizeBoundingBoxes(min_size=1, labels_getter=labels_and_crowd_flags),
    ])


def labels_and_crowd_flags(inputs: Any) -> tuple[torch.Tensor, ...]:
    """What ``SanitizeBoundingBoxes`` filters along with the boxes: ``labels``, and ``iscrowd`` when the target
    has it (``CocoDetection(crowd="ignore")``). ``inputs`` is the ``(image, target)`` pair."""
    target = inputs[1]
    return tuple(target[k] for k in ("labels", "iscrowd") if k in target)
