"""Drawing images with boxes, and the dataset statistics plots of lesson 01.

Every function draws on a matplotlib ``Axes`` (or returns a ``Figure``) and leaves ``plt.show`` to
the caller, so the same helpers work in notebooks, in scripts with the Agg backend and in tests.
Boxes are xyxy pixels, as everywhere in minidet.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

# Colour-blind-friendly palette (Okabe & Ito); class ``c`` gets ``PALETTE[c % len(PALETTE)]``.
PALETTE: tuple[str, ...] = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#FFFFFF")

# COCOeval's object-size ranges (area in pixels^2): small < 32^2 <= medium < 96^2 <= large.
COCO_AREA_EDGES: tuple[float, float] = (32.0, 96.0)


def class_color(label: int) -> str:
    """The fixed palette colour of class ``label`` (0-based)."""
    return PALETTE[int(label) % len(PALETTE)]


def _to_numpy_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] or (H, W, 3) array -> (H, W, 3) array for ``imshow``."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().as_subclass(torch.Tensor)
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image tensor must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
        image = image.permute(1, 2, 0).float().clamp(0, 1).cpu().numpy()
        return image.repeat(3, axis=2) if image.shape[2] == 1 else image
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image array must be (H, W, 3), got {image.shape}")
    return image


def _as_list(values: torch.Tensor | Sequence | None, n: int) -> list | None:
    if values is None:
        return None
    values = values.detach().cpu().tolist() if isinstance(values, torch.Tensor) else list(values)
    if len(values) != n:
        raise ValueError(f"expected {n} values (one per box), got {len(values)}")
    return values


def label_image_axes(ax: Axes, title: str | None = None) -> Axes:
    """Label an image panel: pixel axes (x right, y down) with small ticks, and an optional title."""
    ax.set_xlabel("x (px)", fontsize=8)
    ax.set_ylabel("y (px)", fontsize=8)
    ax.tick_params(labelsize=7)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def draw_detections(ax: Axes, image: torch.Tensor | np.ndarray | None, boxes: torch.Tensor | np.ndarray,
                    labels: torch.Tensor | Sequence[int] | None = None,
                    scores: torch.Tensor | Sequence[float] | None = None,
                    class_names: Sequence[str] | None = None, color: str | None = None,
                    score_thresh: float = 0.0, title: str | None = None, linestyle: str = "-") -> Axes:
    """Show ``image`` and draw each box as a rectangle captioned ``"name score"``.

    Args:
        ax: where to draw.
        image: (3, H, W) float tensor in [0, 1] or (H, W, 3) array; None draws boxes only (on top of
            what ``ax`` already shows, e.g. predictions over a ground-truth plot).
        boxes: (N, 4) xyxy pixels.
        labels: (N,) 0-based class indices; they pick the caption and the palette colour.
        scores: (N,) confidences; boxes below ``score_thresh`` are not drawn.
        class_names: name of each class index (default: the index).
        color: one colour for every box instead of the per-class palette.
        linestyle: matplotlib line style, e.g. ``"--"`` to tell predictions from ground truth.

    Returns:
        ``ax``, with one ``Rectangle`` patch per drawn box.
    """
    if image is not None:
        ax.imshow(_to_numpy_image(image))
    boxes_t = torch.as_tensor(boxes).detach().cpu().float().reshape(-1, 4)
    n = len(boxes_t)
    label_list, score_list = _as_list(labels, n), _as_list(scores, n)
    for i, (x1, y1, x2, y2) in enumerate(boxes_t.tolist()):
        score = score_list[i] if score_list is not None else None
        if score is not None and score < score_thresh:
            continue
        label = int(label_list[i]) if label_list is not None else None
        c = color or (class_color(label) if label is not None else PALETTE[0])
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c, linewidth=1.5, linestyle=linestyle))
        parts = []
        if label is not None:
            parts.append(class_names[label] if class_names is not None else str(label))
        if score is not None:
            parts.append(f"{score:.2f}")
        if parts:
            ax.text(x1, y1, " ".join(parts), fontsize=7, color="black", va="bottom",
                    bbox={"facecolor": c, "alpha": 0.8, "pad": 1, "edgecolor": "none"}, clip_on=True)
    return label_image_axes(ax, title)


def show_samples(dataset, indices: Sequence[int], ncols: int = 4, figsize: tuple[float, float] | None = None) -> Figure:
    """A grid of ``dataset[i]`` images with their ground-truth boxes and class names.

    Works on any :class:`~minidet.data.CocoDetection` (uses its ``class_names``); each panel is
    titled with the image id and the number of objects.
    """
    indices = list(indices)
    ncols = max(1, min(ncols, len(indices)))
    nrows = max(1, math.ceil(len(indices) / ncols))
    figsize = figsize or (min(12.0, 3.0 * ncols), min(6.0 * max(1, nrows / 2), 3.0 * nrows))
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    names = getattr(dataset, "class_names", None)
    for ax, i in zip(axes.flat, indices):
        image, target = dataset[i]
        draw_detections(ax, image, target["boxes"], target["labels"], class_names=names,
                        title=f"image id {target['image_id']}: {len(target['labels'])} objects")
    for ax in list(axes.flat)[len(indices):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def level_edges(sizes_per_level: Sequence[Sequence[float]]) -> list[float]:
    """Boundaries between pyramid levels on the object-size axis.

    ``sizes_per_level`` holds each level's anchor sides (e.g. from
    :func:`minidet.models.anchors.anchor_sizes`). The boundary between levels ``l`` and ``l + 1`` is
    the geometric mean of the largest anchor of ``l`` and the smallest of ``l + 1``: an object is on
    the level whose anchor sizes are nearest to its own side in log scale.
    """
    return [math.sqrt(max(a) * min(b)) for a, b in zip(sizes_per_level[:-1], sizes_per_level[1:])]


def plot_size_histogram(ax: Axes, sizes: torch.Tensor | np.ndarray, edges: Sequence[float] = (),
                        level_names: Sequence[str] | None = None, coco_ranges: bool = True, bins: int = 40,
                        title: str = "Object size") -> Axes:
    """Histogram of object sides ``sqrt(w * h)`` on a log axis, with the level boundaries ``edges``
    (dashed, each bin named after its level) and COCO's small/medium/large limits (dotted).

    Args:
        sizes: (N,) object sides in pixels.
        edges: increasing boundaries between consecutive levels, see :func:`level_edges`.
        level_names: ``len(edges) + 1`` names, e.g. ``["P3", ..., "P7"]``; counts are shown per bin.
    """
    sizes = np.asarray(torch.as_tensor(sizes).float().cpu(), dtype=float)
    sizes = sizes[sizes > 0]
    lo, hi = (sizes.min(), sizes.max()) if len(sizes) else (1.0, 2.0)
    ax.hist(sizes, bins=np.geomspace(lo, hi * 1.0001, bins), color="0.6", edgecolor="0.3")
    ax.set_xscale("log")
    for e in edges:
        ax.axvline(e, color="C3", linestyle="--", linewidth=1.2)
    if coco_ranges:
        for e, name in zip(COCO_AREA_EDGES, ("small | medium", "medium | large")):
            ax.axvline(e, color="C0", linestyle=":", linewidth=1.2)
            ax.text(e, 0.02, f"{name} ", transform=ax.get_xaxis_transform(), color="C0", fontsize=7,
                    rotation=90, va="bottom", ha="right")
    if level_names is not None:
        if len(level_names) != len(edges) + 1:
            raise ValueError(f"need {len(edges) + 1} level names for {len(edges)} edges, got {len(level_names)}")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)  # room for the level names above the bars
        bounds = [0.0, *edges, math.inf]
        xmin, xmax = ax.get_xlim()
        for name, a, b in zip(level_names, bounds[:-1], bounds[1:]):
            count = int(((sizes >= a) & (sizes < b)).sum())
            a_, b_ = max(a, xmin), min(b, xmax)
            if a_ < b_:
                ax.text(math.sqrt(a_ * b_), 0.98, f"{name}\n{count}", transform=ax.get_xaxis_transform(),
                        color="C3", ha="center", va="top", fontsize=8)
    ax.set_xlabel(r"object side $\sqrt{wh}$ (px, log scale)")
    ax.set_ylabel("objects")
    ax.set_title(title)
    return ax


def plot_class_counts(ax: Axes, labels: torch.Tensor | Sequence[int], class_names: Sequence[str],
                      title: str = "Objects per class") -> Axes:
    """Bar chart of how many objects each class has, in the classes' palette colours."""
    labels_t = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    counts = torch.bincount(labels_t, minlength=len(class_names)).tolist()
    x = range(len(class_names))
    ax.bar(x, counts, color=[class_color(c) for c in x], edgecolor="0.3")
    ax.set_xticks(list(x), list(class_names), rotation=30, fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel("objects")
    ax.set_title(title)
    return ax
