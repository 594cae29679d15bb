"""A seeded synthetic detection dataset ("shapes") written as real COCO files.

Six classes (:data:`SHAPE_CLASSES`, category ids 1..6) of rotated, textured polygons on cluttered
gradient backgrounds, with un-annotated distractor shapes and bounded occlusion
(see :mod:`minidet.data.shapes_scene`). Layout under ``root``::

    train/000000.png ...          val/000000.png ...
    annotations/instances_train.json   annotations/instances_val.json
    shapes_config.json            # written last: its presence marks a complete dataset

Image ``i`` of a split draws all its randomness from ``numpy.random.default_rng([seed, split, i])``,
so the bytes do not depend on the number of worker processes. Annotation ``area`` is the *box*
area ``w * h`` (what COCOeval's small/medium/large ranges are then measured on); ``iscrowd`` is 0.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from minidet.data.shapes_config import ShapesConfig
from minidet.data.shapes_geometry import SHAPE_CLASSES
from minidet.data.shapes_scene import render_image
from minidet.errors import DatasetError

__all__ = ["SHAPE_CLASSES", "ShapesConfig", "generate_shapes"]

SPLITS: tuple[str, ...] = ("train", "val")
BYTES_PER_PIXEL = 1.9  # PNG size of a shapes image (compress_level=1), measured on the default data
CONFIG_FILE = "shapes_config.json"
_IMAGE_NAME = re.compile(r"^\d{6}\.png$")


def _paths(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for split in SPLITS:
        out[split] = root / "annotations" / f"instances_{split}.json"
        out[f"{split}_images"] = root / split
    return out


def _render_one(job: tuple[ShapesConfig, int, int, str]) -> list[dict[str, Any]]:
    """Render image ``index`` of split number ``split_id``, save it as PNG at ``path``, and return
    its annotations without ids (category_id, bbox [x, y, w, h], area)."""
    cfg, split_id, index, path = job
    rng = np.random.default_rng([cfg.seed, split_id, index])
    pixels, objects, crowds = render_image(cfg, rng)
    Image.fromarray(pixels).save(path, compress_level=1)
    anns = []
    for iscrowd, group in ((0, objects), (1, crowds)):
        for label, (x0, y0, x1, y1) in group:
            bbox = [round(v, 3) for v in (x0, y0, x1 - x0, y1 - y0)]
            anns.append({"category_id": label + 1, "bbox": bbox, "area": round(bbox[2] * bbox[3], 3), "iscrowd": iscrowd})
    return anns


def _coco_json(cfg: ShapesConfig, split: str, per_image: list[list[dict[str, Any]]]) -> dict[str, Any]:
    images, annotations = [], []
    for index, anns in enumerate(per_image):
        image_id = index + 1
        images.append({"id": image_id, "file_name": f"{index:06d}.png",
                       "width": cfg.image_size, "height": cfg.image_size})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    return {
        "info": {"description": f"minidet synthetic shapes, split {split}", "config": cfg.to_dict()},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(cfg.classes)],
    }


def _is_complete(root: Path, cfg: ShapesConfig) -> bool:
    """True when ``root`` holds a finished dataset made with exactly ``cfg``.

    Raises DatasetError when it holds a finished dataset made with a *different* config, so a
    changed config never silently reuses or silently destroys old data.
    """
    marker = root / CONFIG_FILE
    if not marker.is_file():
        return False
    try:
        old = json.loads(marker.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{marker}: unreadable shapes config ({e}); pass overwrite=True to regenerate") from e
    old = {**ShapesConfig().to_dict(), **old} if isinstance(old, dict) else old  # fields added later: their defaults
    if old != cfg.to_dict():
        diff = {k: (old.get(k), v) for k, v in cfg.to_dict().items() if old.get(k) != v}
        raise DatasetError(f"{marker}: dataset was generated with a different config "
                           f"(field: (on disk, requested) = {diff}); pass overwrite=True to regenerate")
    paths = _paths(root)
    counts = {"train": cfg.num_train, "val": cfg.num_val}
    return all(paths[s].is_file() and (paths[f"{s}_images"] / f"{counts[s] - 1:06d}.png").is_file()
               for s in SPLITS if counts[s] > 0)


def generate_shapes(root: str | os.PathLike, config: ShapesConfig = ShapesConfig(),
                    overwrite: bool = False, workers: int | None = None, progress: bool = True) -> dict[str, Path]:
    """Write the shapes dataset of ``config`` under ``root`` (skipped if already there).

    Args:
        root: output folder (created if missing).
        config: what to generate; same config -> same bytes.
        overwrite: regenerate even if ``root`` holds a dataset (any config).
        workers: processes for rendering; default ``min(2, os.cpu_count())``. Output bytes do not
            depend on it.
        progress: say where the data goes and how much (about :data:`BYTES_PER_PIXEL` bytes per pixel), with
            a tqdm progress bar.

    Returns:
        ``{"train": ann_json, "val": ann_json, "train_images": dir, "val_images": dir}``.
    """
    root = Path(root)
    paths = _paths(root)
    if not overwrite and _is_complete(root, config):
        return paths
    (root / CONFIG_FILE).unlink(missing_ok=True)  # the dataset is incomplete until the end
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    counts = {"train": config.num_train, "val": config.num_val}
    jobs = []
    for split_id, split in enumerate(SPLITS):
        image_dir = paths[f"{split}_images"]
        image_dir.mkdir(parents=True, exist_ok=True)
        for stale in image_dir.iterdir():  # leftovers of an older, larger run
            if _IMAGE_NAME.match(stale.name) and int(stale.name[:6]) >= counts[split]:
                stale.unlink()
        jobs += [(config, split_id, i, str(image_dir / f"{i:06d}.png")) for i in range(counts[split])]
    if progress and jobs:
        mb = len(jobs) * config.image_size ** 2 * BYTES_PER_PIXEL / 1e6
        print(f"minidet: generating the shapes data once: {config.num_train} train + {config.num_val} val images of "
              f"{config.image_size} px (about {mb:.0f} MB) -> {root}", flush=True)
    bar = partial(tqdm, total=len(jobs), desc="shapes", unit="img", disable=not progress, dynamic_ncols=True)
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.Pool(workers) as pool:  # imap keeps the order, and the bar moves as images finish
            per_image = list(bar(pool.imap(_render_one, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers))))))
    else:
        per_image = [_render_one(job) for job in bar(jobs)]
    paths["train"].write_text(json.dumps(_coco_json(config, "train", per_image[:config.num_train])))
    paths["val"].write_text(json.dumps(_coco_json(config, "val", per_image[config.num_train:])))
    (root / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1))
    return paths
