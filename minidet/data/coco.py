"""COCO-format detection dataset on pycocotools; works unchanged on real COCO and on the shapes data.

A sample is ``(image, target)``:

- ``image``: ``tv_tensors.Image`` float32 (3, H, W) in [0, 1] (grayscale files are converted to RGB);
- ``target``: ``boxes`` ``tv_tensors.BoundingBoxes`` XYXY float32 (N, 4) with ``canvas_size=(H, W)``,
  ``labels`` int64 (N,) in ``0..num_classes-1``, ``image_id`` int, ``orig_size`` int64 (2,) = (H0, W0)
  of the file.

Crowd annotations (``iscrowd=1``) mark regions, not instances. With ``crowd="ignore"`` (``minidet train
--crowd ignore``) they come as ``target["crowd_boxes"]`` ``(M, 4)`` xyxy float32, moved by the same transforms
as the boxes, and the detectors ignore the anchors inside them (:mod:`minidet.assigners.crowd`); with
``crowd="drop"`` (the default; ``results/crowd/`` measured no gain from ignoring) they are skipped; ``"box"`` makes them ordinary boxes. COCOeval ignores
detections on crowd regions in any case. An image with no (non-crowd) annotation is a valid
sample with ``boxes`` of shape (0, 4): it trains as all-negative.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from minidet.data.coco_validate import load_coco_json
from minidet.errors import ConfigError, DatasetError

Sample = tuple[tv_tensors.Image, dict[str, Any]]
CROWD_MODES = ("drop", "ignore", "box")


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit torch seed that depends only on (seed, epoch, index), via numpy's SeedSequence hash."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


class CocoDetection(Dataset):
    """Images and boxes of a COCO json, with deterministic per-(seed, epoch, index) augmentation.

    Args:
        ann_file: COCO instances json; validated record by record (see :mod:`minidet.data.coco_validate`).
        image_dir: folder holding the images' ``file_name`` paths.
        transforms: optional ``transforms(image, target) -> (image, target)``, e.g. from
            :func:`minidet.data.build_transforms`. It runs under ``torch.manual_seed(sample_seed(seed,
            epoch, index))`` inside a forked RNG, so a sample is the same whatever the DataLoader
            workers and the global RNG state.
        seed: augmentation seed.
        crowd: ``"drop"`` ``iscrowd=1`` annotations, keep them as ignore regions (``"ignore"``: ``crowd_boxes``
            in the target) or as ordinary boxes (``"box"``).
        skip_crowd: the older switch: ``False`` is ``crowd="box"``.
        skip_bad_records: drop malformed records (and say how many, also in ``skipped_records``)
            instead of refusing the dataset; ``minidet check-data`` lists them.

    Call :meth:`set_epoch` before creating each epoch's DataLoader iterator (with
    ``persistent_workers=True`` the workers keep the epoch they were started with).
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path,
                 transforms: Callable[..., Sample] | None = None, seed: int = 0, skip_crowd: bool = True,
                 skip_bad_records: bool = False, crowd: str = "drop") -> None:
        if crowd not in CROWD_MODES:
            raise ConfigError(f"CocoDetection: crowd = {crowd!r} must be one of {CROWD_MODES}")
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        data = load_coco_json(self.ann_file, skip_bad=skip_bad_records)
        self.skipped_records = int(data.pop("_skipped", 0))
        if not self.image_dir.is_dir():
            raise DatasetError(f"{self.ann_file}: image_dir {str(self.image_dir)!r} is not a directory")
        self.coco = COCO()
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.dataset = data
            self.coco.createIndex()
        self.ids: list[int] = sorted(self.coco.imgs)
        self.cat_ids: list[int] = sorted(self.coco.cats)
        self.class_names: tuple[str, ...] = tuple(self.coco.cats[c]["name"] for c in self.cat_ids)
        self.num_classes = len(self.cat_ids)
        self.cat_id_to_label: dict[int, int] = {c: i for i, c in enumerate(self.cat_ids)}
        self.label_to_cat_id: dict[int, int] = {i: c for i, c in enumerate(self.cat_ids)}
        self.transforms = transforms
        self.seed = seed
        self.crowd = "box" if not skip_crowd and crowd == "drop" else crowd
        self.skip_crowd = self.crowd == "drop"
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (samples of other epochs differ)."""
        self.epoch = epoch

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def check_files(self) -> None:
        """Raise DatasetError listing the image files the json names but the disk lacks."""
        missing = [p for p in map(self.image_path, self.ids) if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:5])
            raise DatasetError(f"{self.ann_file}: {len(missing)} of {len(self.ids)} image files are "
                               f"missing under {self.image_dir}: {shown}{' ...' if len(missing) > 5 else ''}")

    def _read_image(self, image_id: int) -> torch.Tensor:
        """(3, H, W) float32 in [0, 1]; checks the file exists and matches the json's size."""
        info, path = self.coco.imgs[image_id], self.image_path(image_id)
        try:
            with Image.open(path) as pil:
                pixels = F.pil_to_tensor(pil.convert("RGB"))  # (3, H, W) uint8
        except FileNotFoundError as e:
            raise DatasetError(f"{self.ann_file}: image file {str(path)!r} (image id={image_id}) not found") from e
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetError(f"{path}: not a readable image (image id={image_id}): {e}") from e
        h, w = pixels.shape[1:]
        if (h, w) != (info["height"], info["width"]):
            raise DatasetError(f"{self.ann_file}: image id={image_id}: file {str(path)!r} is {w}x{h} but "
                               f"the json says width={info['width']}, height={info['height']}")
        return pixels.float().div_(255)

    def load(self, index: int) -> Sample:
        """Sample ``index`` before transforms."""
        image_id = self.ids[index]
        image = tv_tensors.Image(self._read_image(image_id))
        h, w = image.shape[1:]
        anns = [a for a in self.coco.imgToAnns[image_id] if not (self.crowd == "drop" and a["iscrowd"])]
        xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4)
        xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1).float()  # (N, 4)
        target = {
            "boxes": tv_tensors.BoundingBoxes(xyxy, format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor([self.cat_id_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "image_id": image_id,
            "orig_size": torch.tensor([h, w], dtype=torch.int64),
        }
        if self.crowd == "ignore":  # split off after the transforms, which move and sanitise boxes and flags together
            target["iscrowd"] = torch.tensor([bool(a["iscrowd"]) for a in anns], dtype=torch.bool)
        return image, target

    def __getitem__(self, index: int) -> Sample:
        index = range(len(self))[index]  # IndexError when out of range; negative -> positive
        image, target = self.load(index)
        if self.transforms is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed(self.seed, self.epoch, index))
                image, target = self.transforms(image, target)
        return image, split_crowd(target)


def split_crowd(target: dict[str, Any]) -> dict[str, Any]:
    """Move the boxes flagged by ``target["iscrowd"]`` to ``target["crowd_boxes"]`` ``(M, 4)`` (plain float32
    tensor); ``boxes`` and ``labels`` keep the instances. A target without ``iscrowd`` is returned as is."""
    if "iscrowd" not in target:
        return target
    target = dict(target)
    crowd = target.pop("iscrowd")
    boxes = target["boxes"]
    target["crowd_boxes"] = boxes.as_subclass(torch.Tensor)[crowd].float()
    target["boxes"] = tv_tensors.wrap(boxes.as_subclass(torch.Tensor)[~crowd], like=boxes)
    target["labels"] = target["labels"][~crowd]
    return target
