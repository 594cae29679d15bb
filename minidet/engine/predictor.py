"""A trained detector as a function of images: ``minidet.load(checkpoint).predict(image)``.

The predictor holds the model and what it needs to see an image as it saw its validation images: the input
side it was trained at and the evaluation transform of :func:`minidet.data.build_transforms` (aspect-kept
resize so the image fits in a ``size x size`` square, then bottom/right padding to a multiple of 32). Its
detections are mapped back to the pixels of the image it was given.

>>> det = minidet.load("runs/retinanet/last.pt")
>>> out = det.predict("photo.jpg")          # or a PIL image, an (H, W, 3) uint8 array, a (3, H, W) tensor
>>> out["boxes"], out["scores"], out["labels"], out["names"]
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from minidet.boxes.ops import rescale_boxes
from minidet.data.collate import pad_images
from minidet.data.transforms import build_transforms
from minidet.errors import ConfigError, DatasetError

ImageLike = Union[str, Path, Image.Image, np.ndarray, Tensor]


def read_image(path: str | Path) -> Image.Image:
    """Open any file Pillow reads as an RGB image; a missing or undecodable file raises DatasetError naming it."""
    try:
        with Image.open(path) as pil:
            return pil.convert("RGB")
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: image file not found") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from e


def to_image_tensor(image: ImageLike) -> Tensor:
    """One image -> ``(3, H, W)`` float32 in [0, 1], the form :class:`~minidet.data.CocoDetection` gives the model.

    Accepts a path (any format Pillow reads), a PIL image (any mode, converted to RGB), a numpy array
    ``(H, W, 3)`` / ``(H, W, 4)`` (alpha dropped) / ``(H, W)`` of uint8 in 0..255 or float in [0, 1], or a
    tensor ``(3, H, W)`` / ``(1, H, W)``, uint8 or float in [0, 1].
    """
    if isinstance(image, (str, Path)):
        image = read_image(image)
    if isinstance(image, Image.Image):
        return F.pil_to_tensor(image.convert("RGB")).float().div_(255)
    if isinstance(image, np.ndarray):
        arr = image[..., None] if image.ndim == 2 else image
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ConfigError(f"predict: numpy image of shape {image.shape} must be (H, W), (H, W, 3) or (H, W, 4)")
        image = torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1)  # (C, H, W)
    if not isinstance(image, Tensor):
        raise ConfigError(f"predict: cannot read an image from a {type(image).__name__}; give a path, a PIL image, "
                          "a numpy (H, W, 3) uint8 array or a (3, H, W) tensor")
    image = image.as_subclass(Tensor).detach().cpu()
    if image.dim() != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 1:
        raise ConfigError(f"predict: image tensor of shape {tuple(image.shape)} must be (3, H, W) or (1, H, W)")
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    if image.dtype == torch.uint8:
        return image.float().div_(255)
    if not image.is_floating_point():
        raise ConfigError(f"predict: image tensor dtype {image.dtype} must be uint8 (0..255) or float (0..1)")
    return image.float()


class Predictor:
    """A detector with its class names and its own preprocessing; build it with :func:`load`.

    Args:
        model: a minidet detector (eval mode returns ``boxes``, ``scores``, ``labels`` per image).
        class_names: name of each label ``0..C-1``.
        size: the input side the model was trained at (``RunConfig.size``).
        category_ids: the dataset's category id of each label (default ``1..C``).
        device: where the model runs; results always come back on the CPU.
    """

    def __init__(self, model: nn.Module, class_names: Sequence[str], size: int, category_ids: Sequence[int] | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.class_names = tuple(class_names)
        self.category_ids = tuple(category_ids) if category_ids is not None else tuple(range(1, len(self.class_names) + 1))
        self.size = int(size)
        self.transform = build_transforms(False, self.size)  # the validation pipeline of minidet train

    def __repr__(self) -> str:
        return (f"Predictor({type(self.model).__name__}, {len(self.class_names)} classes {list(self.class_names)}, "
                f"input side {self.size} px, on {self.device})")

    def preprocess(self, images: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``(3, H0, W0)`` images in [0, 1] -> padded ``(B, 3, Hp, Wp)`` batch and ``(B, 2)`` resized sizes."""
        resized = [self.transform(tv_tensors.Image(img)) for img in images]
        return pad_images(resized)

    @torch.no_grad()
    def predict(self, image: ImageLike | Sequence[ImageLike], score_thresh: float | None = None,
                batch_size: int = 8) -> dict[str, Any] | list[dict[str, Any]]:
        """Detections of one image, or of each image of a list, in that image's own pixels.

        Args:
            image: one image (see :func:`to_image_tensor` for the accepted kinds) or a list of them.
            score_thresh: keep detections scoring above it (default: the model's own, 0.05 for the dense models).
            batch_size: images per forward pass.

        Returns:
            per image a dict with ``boxes`` ``(N, 4)`` float32 xyxy in the original image's pixels,
            ``scores`` ``(N,)``, ``labels`` ``(N,)`` int64 in ``0..C-1`` and ``names`` (N strings), sorted
            by decreasing score, on the CPU. A list in gives a list out.
        """
        single = not isinstance(image, (list, tuple))
        images = [to_image_tensor(im) for im in ([image] if single else image)]
        results: list[dict[str, Any]] = []
        own = getattr(self.model, "score_thresh", None)  # the post-processing threshold; a lower request lowers it
        if own is not None and score_thresh is not None and score_thresh < own:
            self.model.score_thresh = score_thresh
        try:
            for start in range(0, len(images), batch_size):
                results += self._predict_batch(images[start:start + batch_size], score_thresh)
        finally:
            if own is not None:
                self.model.score_thresh = own
        return results[0] if single else results

    def _predict_batch(self, chunk: list[Tensor], score_thresh: float | None) -> list[dict[str, Any]]:
        """Detections of ``(3, H0, W0)`` images, mapped from the resized input back to each one's pixels."""
        batch, sizes = self.preprocess(chunk)
        dets = self.model(batch.to(self.device), image_sizes=sizes.to(self.device))
        results = []
        for det, size, img in zip(dets, sizes.tolist(), chunk):
            keep = det["scores"] > score_thresh if score_thresh is not None else slice(None)
            boxes = rescale_boxes(det["boxes"][keep].float().cpu(), tuple(size), tuple(img.shape[1:]))
            labels = det["labels"][keep].cpu()
            results.append({"boxes": boxes, "scores": det["scores"][keep].float().cpu(), "labels": labels,
                            "names": [self.class_names[i] for i in labels.tolist()]})
        return results

    __call__ = predict


def load(checkpoint: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """The detector a ``minidet train`` run saved, ready for :meth:`Predictor.predict`: the model rebuilt from
    the checkpoint's ``model_config`` with its weights, its class names and its input size.

    Raises:
        CheckpointError: the file is missing, unreadable or not a minidet checkpoint.
        ConfigError: it has no ``model_config`` (not written by ``minidet train``).
    """
    from minidet.engine.experiment import load_detector  # experiment imports the whole engine

    model, mc = load_detector(checkpoint)
    return Predictor(model, mc["class_names"], mc["size"], mc.get("category_ids"), device)
