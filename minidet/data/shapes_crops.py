"""A classification task cut from shapes scenes: square crops around objects, and object-free crops.

What an ImageNet crop is to a real detector's backbone, a crop of a shapes scene is to minidet's tiny
backbone (:mod:`minidet.models.backbones.pretrain` trains on them). A crop around an object has a random
scale, the object's longer side being a fraction ``u ~ U(object_frac)`` of the crop side, and a random
position, the object's box staying inside the crop; it is labelled with the object's category id
(``1..K``). A *background* crop (label 0) overlaps no annotated box: what it shows are the scenes'
gradients, textures and un-annotated distractor shapes, the negatives a detector has to learn to reject.

The scenes are a shapes dataset of their own (:func:`pretrain_scenes`, seed :data:`PRETRAIN_SEED`), so
that no image of a detection split of :class:`~minidet.data.ShapesConfig` ever reaches the pretraining.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from minidet.data.shapes_config import ShapesConfig
from minidet.errors import ConfigError, DatasetError

# Image i of split s is drawn from default_rng([seed, s, i]). The detection data uses seed 0 (ShapesConfig()
# and the lessons' fast set), the lessons 1, 8 and 99, the tests and ablations 2, 3, 4, 7 and 11 (grep for
# "seed=" in minidet/, lessons/ and tests/): 1515 (issue 15, item 1.5) is used by none of them.
PRETRAIN_SEED = 1515
BACKGROUND = "background"
BACKGROUND_TRIES = 50  # random candidate windows per wanted background crop; a crowded scene may yield fewer


@dataclass(frozen=True)
class CropConfig:
    """How crops are cut from a scene (sizes in pixels of the scene unless said otherwise).

    Args:
        size: side of every crop after resizing (the classifier's input).
        object_frac: range of the object's longer box side as a fraction of the crop side.
        min_object_side: objects smaller than this get no crop (upsampled 8 px shapes are mostly blur).
        crops_per_object: crops drawn around each object, each with its own scale and position.
        background_per_scene: object-free crops wanted per scene (fewer when the scene is crowded).
        ambiguous_inside: an object crop is dropped when an object of *another* class, at least as large,
            has this fraction of its box inside the crop (its label would be ambiguous).
    """

    size: int = 64
    object_frac: tuple[float, float] = (0.3, 0.9)
    min_object_side: float = 12.0
    crops_per_object: int = 2
    background_per_scene: int = 2
    ambiguous_inside: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.object_frac
        checks = [("size", self.size >= 32, "must be >= 32 (the backbone's stride)"),
                  ("object_frac", 0 < lo <= hi < 1, "must be (lo, hi) with 0 < lo <= hi < 1"),
                  ("min_object_side", self.min_object_side >= 1, "must be >= 1"),
                  ("crops_per_object", self.crops_per_object >= 1, "must be >= 1"),
                  ("background_per_scene", self.background_per_scene >= 0, "must be >= 0"),
                  ("ambiguous_inside", 0 < self.ambiguous_inside <= 1, "must be in (0, 1]")]
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"CropConfig.{name} = {getattr(self, name)!r} {rule}")


def pretrain_scenes(num_train: int = 1000, num_heldout: int = 200) -> ShapesConfig:
    """The default shapes scenes (same sizes, clutter and classes) with seed :data:`PRETRAIN_SEED`: the
    ``train`` split gives the training crops, the ``val`` split the held-out crops."""
    return ShapesConfig(num_train=num_train, num_val=num_heldout, seed=PRETRAIN_SEED)


@dataclass
class Crops:
    """A crop dataset: ``images`` (N, 3, size, size) uint8, ``labels`` (N,) int64 (0 background, k the
    category id), ``boxes`` (N, 4) float32 ``x0, y0, x1, y1`` of each crop in its scene, ``image_ids`` (N,)
    int64 (the scene's COCO image id) and ``class_names`` (index = label)."""

    images: Tensor
    labels: Tensor
    boxes: Tensor
    image_ids: Tensor
    class_names: list[str]


def _inside_frac(boxes: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Fraction of each box's area inside each window: ``boxes`` (N, 4), ``windows`` (M, 4) -> (M, N)."""
    lt = np.maximum(windows[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(windows[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return inter / np.clip((boxes[:, 2:] - boxes[:, :2]).prod(-1), 1e-9, None)[None]


def object_windows(boxes: np.ndarray, labels: np.ndarray, image_size: int, cfg: CropConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Crop windows around objects: ``boxes`` (N, 4) xyxy and ``labels`` (N,) of one scene ->
    ``(windows (M, 4), window_labels (M,))``, ``cfg.crops_per_object`` tries per object whose longer side
    ``side`` is at least ``cfg.min_object_side`` (and at most ``hi * S``, which the default scenes never exceed).

    Window side ``C = side / u`` with ``u ~ U(max(lo, side / S), hi)``, ``(lo, hi) = cfg.object_frac``, so that it
    fits in the ``S``-px scene; its corner is uniform among the positions that keep the box inside the crop and
    the crop inside the scene (some exist since ``w, h <= side < C <= S``). A window is then dropped when an
    object of another class, at least as large, has ``cfg.ambiguous_inside`` of its box inside it."""
    side = (boxes[:, 2:] - boxes[:, :2]).max(1)
    lo, hi = cfg.object_frac
    keep = np.flatnonzero((side >= cfg.min_object_side) & (side <= hi * image_size)).repeat(cfg.crops_per_object)
    s, b = side[keep], boxes[keep]
    u = rng.uniform(np.maximum(lo, s / image_size), hi)
    c = np.minimum(s / u, image_size)
    low = np.maximum(b[:, 2:] - c[:, None], 0)  # (M, 2) smallest x0, y0
    high = np.minimum(b[:, :2], image_size - c[:, None])
    corner = low + rng.uniform(size=low.shape) * (high - low)
    windows = np.clip(np.concatenate([corner, corner + c[:, None]], 1), 0, image_size)  # clip: rounding only
    # drop a window in which an object of another class, at least as large, mostly lies
    frac = _inside_frac(boxes, windows)  # (M, N)
    rival = (labels[None] != labels[keep][:, None]) & (side[None] >= s[:, None]) & (frac >= cfg.ambiguous_inside)
    ok = ~rival.any(1)
    return windows[ok], labels[keep][ok]


def background_windows(boxes: np.ndarray, image_size: int, cfg: CropConfig, scenes: ShapesConfig,
                       rng: np.random.Generator) -> np.ndarray:
    """Up to ``cfg.background_per_scene`` windows (K, 4) that overlap none of ``boxes`` (N, 4). A window's side
    is that of an object crop around an object that is not there: ``side / u``, with ``side`` log-uniform in
    the generator's object sizes and ``u ~ U(object_frac)``, so that the crop's scale says nothing of its label."""
    n = cfg.background_per_scene * BACKGROUND_TRIES
    side = np.exp(rng.uniform(np.log(cfg.min_object_side), np.log(scenes.max_object_frac * image_size), n))
    c = np.minimum(side / rng.uniform(*cfg.object_frac, n), image_size)
    corner = rng.uniform(size=(n, 2)) * (image_size - c[:, None])
    windows = np.clip(np.concatenate([corner, corner + c[:, None]], 1), 0, image_size)
    free = ~(_inside_frac(boxes, windows) > 0).any(1) if len(boxes) else np.ones(n, bool)
    return windows[free][:cfg.background_per_scene]


def crops_from_coco(ann_file: str | Path, image_dir: str | Path, cfg: CropConfig = CropConfig(),
                    seed: int = PRETRAIN_SEED) -> Crops:
    """Cut the crops of every scene of a shapes COCO split (as written by :func:`~minidet.data.generate_shapes`).

    Crops of scene ``i`` draw from ``default_rng([seed, i])``. Object crops use the non-crowd boxes; a
    background crop avoids every box, crowds included. Each window is resized to ``cfg.size`` with PIL's
    antialiased bilinear filter. Raises :class:`DatasetError` naming the file when the json is unreadable.
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    try:
        coco = json.loads(ann_file.read_text())
        info = ShapesConfig.from_dict(coco["info"]["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{ann_file}: not a shapes annotation file written by generate_shapes ({exc})") from exc
    names = [BACKGROUND] + [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]
    per_image: dict[int, list[dict]] = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        per_image[a["image_id"]].append(a)
    pixels, labels, windows, ids = [], [], [], []
    for index, im in enumerate(sorted(coco["images"], key=lambda im: im["id"])):
        anns = per_image[im["id"]]
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], float).reshape(-1, 4)
        crowd = np.array([a.get("iscrowd", 0) == 1 for a in anns], bool)
        rng = np.random.default_rng([seed, index])
        win, lab = object_windows(xyxy[~crowd], np.array([a["category_id"] for a in anns], int)[~crowd],
                                  im["width"], cfg, rng)
        bg = background_windows(xyxy, im["width"], cfg, info, rng)
        scene = Image.open(image_dir / im["file_name"]).convert("RGB")
        for box in np.concatenate([win, bg]):
            pixels.append(np.asarray(scene.resize((cfg.size, cfg.size), Image.Resampling.BILINEAR, box=tuple(box))))
        labels += lab.tolist() + [0] * len(bg)
        windows.append(np.concatenate([win, bg]))
        ids += [im["id"]] * (len(win) + len(bg))
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous() if pixels else \
        torch.zeros(0, 3, cfg.size, cfg.size, dtype=torch.uint8)
    return Crops(images, torch.tensor(labels, dtype=torch.int64),
                 torch.from_numpy(np.concatenate(windows) if windows else np.zeros((0, 4))).float(),
                 torch.tensor(ids, dtype=torch.int64), names)
