"""Compose one synthetic image: background, then objects and distractors in random order with
bounded occlusion.

Occlusion bookkeeping uses an *owner map* (H, W) int32 holding, per pixel, the index of the topmost
object covering it (>= 0) or -1 for background and distractors. An object's *area* is its count of
in-image pixels with coverage >= 0.5 when it was drawn; its *visible* count drops as later shapes
cover it. A placement is rejected when it would leave any earlier object with
``visible < (1 - occlusion_max) * area``, so no annotated object is ever hidden beyond that bound
(and none needs dropping afterwards).
"""
from __future__ import annotations

import numpy as np

from minidet.data.shapes_config import ShapesConfig
from minidet.data.shapes_draw import TEXTURES, background, contrasting_colour, rasterize, texture
from minidet.data.shapes_geometry import (
    DISTRACTOR_KINDS, Ops, class_ops, distractor_ops, visible_box,
)

Box = tuple[float, float, float, float]
OBJECT_TRIES, DISTRACTOR_TRIES, SHRINK_AFTER = 60, 10, 10


def _candidate(rng: np.random.Generator, cfg: ShapesConfig, is_object: bool, attempt: int) -> tuple[Ops, int]:
    """Random ops and label (-1 for distractors). After SHRINK_AFTER failed attempts the size
    shrinks by 15% per attempt, so crowded images still fit their objects."""
    lo, hi = np.log(cfg.min_object_size), np.log(cfg.max_object_frac * cfg.image_size)
    size = float(np.exp(rng.uniform(lo, hi))) * 0.85 ** max(0, attempt - SHRINK_AFTER)
    size = max(size, float(cfg.min_object_size))
    center = (float(rng.uniform(0, cfg.image_size)), float(rng.uniform(0, cfg.image_size)))
    angle = float(rng.uniform(0, 2 * np.pi))
    if is_object:
        label = int(rng.integers(len(cfg.classes)))
        return class_ops(cfg.classes[label], angle, size, center), label
    kind = DISTRACTOR_KINDS[int(rng.integers(len(DISTRACTOR_KINDS)))]
    return distractor_ops(kind, rng, angle, size, center), -1


def _fill(rng: np.random.Generator, pix: np.ndarray, a: np.ndarray) -> None:
    """Blend a random texture, in a colour that stands out from what lies beneath, into ``pix`` (h, w, 3)
    with coverage ``a`` (h, w), in place."""
    beneath = (pix * a[..., None]).sum(axis=(0, 1)) / max(float(a.sum()), 1e-6)
    colour = contrasting_colour(rng, beneath)
    fill = texture(rng, TEXTURES[int(rng.integers(len(TEXTURES)))], *a.shape, colour)
    pix[...] = pix * (1 - a[..., None]) + fill * a[..., None]


def _paint(rng: np.random.Generator, canvas: np.ndarray, ops: Ops) -> bool:
    """Paint ``ops`` into ``canvas`` (no occlusion bookkeeping); False when nothing of it is inside the image."""
    s = canvas.shape[0]
    x0, y0, alpha = rasterize(ops)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + alpha.shape[1], s), min(y0 + alpha.shape[0], s)
    if ix1 <= ix0 or iy1 <= iy0:
        return False
    _fill(rng, canvas[iy0:iy1, ix0:ix1], alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0])
    return True


def render_crowd(cfg: ShapesConfig, rng: np.random.Generator, canvas: np.ndarray) -> tuple[int, Box] | None:
    """Paint a crowd region: a ``g x g`` grid (g = 3 or 4) of small shapes of one class, jittered, in a square
    of side 30-50 % of the image. Returns ``(label, box)`` (the members' joint tight box), or None if no member
    landed in the image."""
    s = cfg.image_size
    side = float(rng.uniform(0.3, 0.5)) * s
    left, top = (float(v) for v in rng.uniform(0, s - side, size=2))
    label, g = int(rng.integers(len(cfg.classes))), int(rng.integers(3, 5))
    cell, boxes = side / g, []
    for i in range(g * g):
        cx = left + (i % g + 0.5 + rng.uniform(-0.1, 0.1)) * cell
        cy = top + (i // g + 0.5 + rng.uniform(-0.1, 0.1)) * cell
        ops = class_ops(cfg.classes[label], float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.6, 0.85)) * cell, (cx, cy))
        if _paint(rng, canvas, ops) and (box := visible_box(ops, s, s)) is not None:
            boxes.append(box)
    if not boxes:
        return None
    b = np.array(boxes)
    return label, (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max()))


def render_image(cfg: ShapesConfig, rng: np.random.Generator
                 ) -> tuple[np.ndarray, list[tuple[int, Box]], list[tuple[int, Box]]]:
    """Draw one image.

    Returns ``(pixels, objects, crowds)``: ``pixels`` (S, S, 3) uint8 with S = ``cfg.image_size``, and per
    annotated object ``(label, (x0, y0, x1, y1))`` with ``label`` in ``0..len(cfg.classes)-1`` and
    the tight box of the drawn polygon clipped to the image (float pixels, COCO convention); ``crowds`` holds
    the crowd region, if any (:func:`render_crowd`, drawn first with probability ``cfg.crowd_prob``; with
    ``crowd_prob = 0`` no random number is drawn for it, so older datasets keep their bytes).
    """
    s = cfg.image_size
    canvas = background(rng, s)
    crowds = []
    if cfg.crowd_prob > 0 and rng.random() < cfg.crowd_prob:
        crowd = render_crowd(cfg, rng, canvas)
        crowds = [crowd] if crowd is not None else []
    owner = np.full((s, s), -1, dtype=np.int32)
    area: list[int] = []
    visible: list[int] = []
    objects: list[tuple[int, Box]] = []

    n_obj = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    n_dis = int(rng.integers(cfg.num_distractors[0], cfg.num_distractors[1] + 1))
    order = rng.permutation(np.r_[np.ones(n_obj, bool), np.zeros(n_dis, bool)])

    for is_object in order.tolist():
        for attempt in range(OBJECT_TRIES if is_object else DISTRACTOR_TRIES):
            ops, label = _candidate(rng, cfg, is_object, attempt)
            x0, y0, alpha = rasterize(ops)
            ix0, iy0 = max(x0, 0), max(y0, 0)
            ix1, iy1 = min(x0 + alpha.shape[1], s), min(y0 + alpha.shape[0], s)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            a = alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]  # (h, w) in-image coverage
            if a.sum() < cfg.min_inside_frac * alpha.sum():
                continue
            mask = a >= 0.5
            if is_object and not mask.any():
                continue
            region = owner[iy0:iy1, ix0:ix1]
            under = region[mask]
            ids, counts = np.unique(under[under >= 0], return_counts=True)
            vis, full = np.asarray(visible)[ids] - counts, np.asarray(area)[ids]
            if ids.size and np.any(vis < (1 - cfg.occlusion_max) * full):
                continue

            _fill(rng, canvas[iy0:iy1, ix0:ix1], a)
            for i, v in zip(ids.tolist(), vis.tolist()):
                visible[i] = v
            if is_object:
                region[mask] = len(area)
                area.append(int(mask.sum()))
                visible.append(area[-1])
                objects.append((label, visible_box(ops, s, s)))
            else:
                region[mask] = -1
            break
    return np.round(canvas).astype(np.uint8), objects, crowds
