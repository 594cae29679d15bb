"""Plots for anchors and their assignment (lesson 02): the anchors of one feature cell, the IoU of a
ground truth with every anchor of a level as a heat map, per-level bar charts (positives, their
fraction: the level imbalance) and histograms of regression targets.

The functions take tensors in the layout of :class:`minidet.models.anchors.AnchorGenerator`: a
level's anchors are ``(H_l * W_l * A, 4)`` xyxy, ordered ``(y, x, anchor)``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import Tensor

from minidet.viz.boxes import _to_numpy_image, label_image_axes


def anchors_of_cell(level_anchors: Tensor, feature_size: tuple[int, int], num_anchors: int, row: int, col: int) -> Tensor:
    """The ``(num_anchors, 4)`` anchors of feature cell ``(row, col)`` of one level.

    Args:
        level_anchors: ``(H * W * num_anchors, 4)`` anchors of the level.
        feature_size: ``(H, W)`` of the level's feature map.
    """
    h, w = feature_size
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"cell ({row}, {col}) is outside a {h}x{w} feature map")
    return level_anchors.reshape(h, w, num_anchors, 4)[row, col]


def draw_anchors(ax: Axes, image: Tensor | np.ndarray | None, anchors: Tensor, color: str = "C1",
                 title: str | None = None, gt_boxes: Tensor | None = None) -> Axes:
    """Draw ``anchors`` (N, 4) xyxy as rectangles over ``image`` (optional), their centres as dots and
    ``gt_boxes`` (M, 4) in white. The view grows to show anchors that stick out of the image, with the
    image border drawn dashed."""
    anchors = anchors.detach().cpu().float().reshape(-1, 4)
    x_lo, y_lo, x_hi, y_hi = 0.0, 0.0, 1.0, 1.0
    if image is not None:
        img = _to_numpy_image(image)
        ax.imshow(img)
        y_hi, x_hi = float(img.shape[0]), float(img.shape[1])
        ax.add_patch(Rectangle((0, 0), x_hi, y_hi, fill=False, edgecolor="0.4", linestyle="--", linewidth=1))
    for x1, y1, x2, y2 in anchors.tolist():
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.2))
    if len(anchors):
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        ax.plot(centres[:, 0].cpu().numpy(), centres[:, 1].cpu().numpy(), "o", color=color, markersize=3)
        x_lo, y_lo = min(x_lo, float(anchors[:, 0].min())), min(y_lo, float(anchors[:, 1].min()))
        x_hi, y_hi = max(x_hi, float(anchors[:, 2].max())), max(y_hi, float(anchors[:, 3].max()))
    if gt_boxes is not None:
        for x1, y1, x2, y2 in gt_boxes.detach().cpu().float().reshape(-1, 4).tolist():
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5))
    pad = 0.03 * max(x_hi - x_lo, y_hi - y_lo)
    ax.set_xlim(x_lo - pad, x_hi + pad)
    ax.set_ylim(y_hi + pad, y_lo - pad)  # image convention: y grows downwards
    return label_image_axes(ax, title)


def plot_iou_heatmap(ax: Axes, iou: Tensor, feature_size: tuple[int, int], num_anchors: int, stride: float,
                     center_offset: float = 0.0, gt_box: Tensor | None = None, image: Tensor | np.ndarray | None = None,
                     title: str | None = None, vmax: float = 1.0) -> Axes:
    """Heat map of one ground truth's IoU with every anchor of a level, best anchor per cell.

    Args:
        iou: ``(H * W * num_anchors,)`` IoU of the level's anchors with the ground truth.
        feature_size: ``(H, W)`` of the level.
        stride, center_offset: cell ``(y, x)`` is centred at ``((y, x) + center_offset) * stride`` pixels,
            so the map lies in image coordinates and can sit over ``image``.
        gt_box: ``(4,)`` xyxy, drawn in white.

    Returns:
        ``ax`` with a colour bar labelled "max IoU over the cell's anchors".
    """
    h, w = feature_size
    cell = iou.detach().cpu().float().reshape(h, w, num_anchors).max(dim=2).values.cpu().numpy()
    x0, y0 = (center_offset - 0.5) * stride, (center_offset - 0.5) * stride
    extent = (x0, x0 + w * stride, y0 + h * stride, y0)
    if image is not None:
        ax.imshow(_to_numpy_image(image), alpha=0.5)
    im = ax.imshow(cell, extent=extent, cmap="viridis", vmin=0.0, vmax=vmax, alpha=0.75 if image is not None else 1.0,
                   interpolation="nearest")
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("max IoU over the cell's anchors", fontsize=7)
    cb.ax.tick_params(labelsize=7)
    if gt_box is not None:
        x1, y1, x2, y2 = gt_box.detach().cpu().float().reshape(4).tolist()
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    return label_image_axes(ax, title)


def plot_per_level(ax: Axes, values: Mapping[str, Sequence[float] | Tensor], level_names: Sequence[str],
                   ylabel: str, title: str, log: bool = False, annotate: bool = True) -> Axes:
    """Grouped bar chart of one quantity per pyramid level for several settings.

    Args:
        values: ``{setting name: (L,) values}``, e.g. ``{"base scale 4": pos_per_level, ...}``.
        level_names: the ``L`` level names (x axis).
        log: logarithmic y axis (level counts span orders of magnitude).
        annotate: write each bar's value above it.
    """
    n = max(1, len(values))
    width = 0.8 / n
    x = np.arange(len(level_names))
    for k, (name, v) in enumerate(values.items()):
        v = np.asarray(torch.as_tensor(v).detach().float().cpu(), dtype=float).reshape(-1)
        if len(v) != len(level_names):
            raise ValueError(f"{name!r}: {len(v)} values for {len(level_names)} levels")
        bars = ax.bar(x + (k - (n - 1) / 2) * width, v, width, label=name)
        if annotate:
            fmt = "{:.0f}" if np.all(v == np.round(v)) else "{:.2g}"
            ax.bar_label(bars, labels=[fmt.format(t) for t in v], fontsize=7)
    ax.set_xticks(x, list(level_names))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("pyramid level")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(values) > 1:
        ax.legend(fontsize=8)
    return ax


def plot_delta_histograms(axes: Sequence[Axes], deltas: Tensor, names: Sequence[str] = ("t_x", "t_y", "t_w", "t_h"),
                          bins: int = 40, title: str = "", unit: str = "unitless") -> Sequence[Axes]:
    """One histogram per regression-target component: ``deltas`` ``(N, K)`` on ``K`` axes, x axis in ``unit``."""
    deltas = deltas.detach().cpu().float().reshape(len(deltas), -1)
    if len(axes) != deltas.shape[1] or len(names) != deltas.shape[1]:
        raise ValueError(f"{deltas.shape[1]} components need as many axes and names, got {len(axes)} and {len(names)}")
    for k, (ax, name) in enumerate(zip(axes, names)):
        ax.hist(deltas[:, k].cpu().numpy(), bins=bins, color="C0", edgecolor="0.3")
        ax.set_xlabel(f"${name}$ ({unit})")
        ax.set_ylabel("anchors")
        ax.set_title(f"{title}${name}$", fontsize=9)
    return axes
