"""Pictures of Dual Weighting (Li et al., "A Dual Weighting Label Assignment Scheme for Object Detection",
CVPR 2022, https://arxiv.org/abs/2203.09730): the weight maps of a detector over an image, the coupled
weights of GFL / VFL next to DW's decoupled pair (the paper's Fig. 1), an explorer of the weight functions
and an explorer of the weight maps of trained snapshots.

Every DW number here comes from :mod:`minidet.assigners.dw_weights`, the functions the detector trains
with. A classification loss is written, as in the DW paper, per sample and class as

.. math:: L = -w^{pos} \\log s - w^{neg} \\log(1 - s)

with ``s`` the predicted score; GFL and VFL are rewritten in that form below (they are reference formulas
for the pictures, not minidet losses).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor, nn
from torchvision.ops import box_iou

from minidet.assigners import dw_weights as dw
from minidet.boxes.ops import pad_targets
from minidet.viz.boxes import draw_detections, label_image_axes

# Four candidate points of one ground truth, as (IoU of the predicted box, score), lettered as in the paper's
# Fig. 1: A good at both, B confident but badly localised, C poor at both, D well localised but unsure.
# The values are ours, chosen so that every IoU is above DW's threshold 0.5.
FIG1_SAMPLES: dict[str, tuple[float, float]] = {"A": (0.90, 0.85), "B": (0.60, 0.85), "C": (0.55, 0.30), "D": (0.90, 0.30)}


def gfl_weights(iou: Tensor, score: Tensor, beta: float = 2.0) -> tuple[Tensor, Tensor]:
    """Quality focal loss of GFL (Li et al., "Generalized Focal Loss", NeurIPS 2020, Sec. 3, QFL;
    https://arxiv.org/abs/2006.04388), :math:`-|t - s|^\\beta\\,((1 - t)\\log(1 - s) + t \\log s)` with the
    soft target ``t = IoU``, as a weight pair:

    .. math:: w^{pos} = t\\,|s - t|^\\beta, \\qquad w^{neg} = (1 - t)\\,|s - t|^\\beta

    Coupled: ``w_neg / w_pos = (1 - t) / t`` whatever the score. ``iou``, ``score``: same shape."""
    m = (score - iou).abs() ** beta
    return iou * m, (1 - iou) * m


def vfl_weights(iou: Tensor, score: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> tuple[Tensor, Tensor]:
    """Varifocal loss (Zhang et al., "VarifocalNet", CVPR 2021, https://arxiv.org/abs/2008.13367): for a
    positive (``t = IoU > 0``) :math:`-t\\,(t \\log s + (1 - t)\\log(1 - s))`, for a negative
    :math:`-\\alpha s^\\gamma \\log(1 - s)`, as a weight pair:

    .. math:: (w^{pos}, w^{neg}) = (t^2,\\ t(1 - t)) \\text{ if } t > 0, \\qquad (0,\\ \\alpha s^\\gamma) \\text{ if } t = 0

    A positive's pair depends on the IoU alone. ``iou``, ``score``: same shape."""
    pos = iou > 0
    return torch.where(pos, iou * iou, 0.0), torch.where(pos, iou * (1 - iou), alpha * score**gamma)


def dw_toy_weights(iou: Tensor, score: Tensor, prior: Tensor | None = None, mu: float = 5.0, beta: float = 5.0,
                   gamma1: float = 2.0, gamma2: float = 2.0, iou_threshold: float = 0.5, pos_form: str = "code",
                   neg_form: str = "code", consistency_beta: float = 0.8) -> dict[str, Tensor]:
    """DW's weights of the ``N`` candidate points of one ground truth, from their IoU and score alone.

    ``p_loc = exp(-beta (1 - IoU))``: the GIoU loss is ``1 - IoU`` when the enclosing box is the union
    (e.g. nested boxes). The consistency ``v`` is the code's ``score * p_loc`` (``pos_form="code"``) or the
    paper's ``score^beta IoU^(1 - beta)`` (``"paper"``, ``beta = consistency_beta``); then
    :func:`~minidet.assigners.dw_weights.dw_pos_weight` (normalised over the ``N`` points),
    :func:`~minidet.assigners.dw_weights.neg_prob` (``neg_form``) and
    :func:`~minidet.assigners.dw_weights.dw_neg_weight`.

    Args:
        iou, score: ``(N,)``; ``prior``: ``(N,)`` centre prior (default 1: every point at the centre).

    Returns:
        ``{"w_pos", "w_neg", "p_neg", "p_loc", "v"}``, each ``(N,)``.
    """
    iou, score = iou.double(), score.double()
    prior = torch.ones_like(iou) if prior is None else prior.double()
    p_loc = dw.localization_score(1 - iou, beta)
    col = lambda x: x[None, :, None]  # (N,) -> (1, N, 1): one image, one ground truth
    v = dw.paper_consistency(score, iou, consistency_beta) if pos_form == "paper" else dw.consistency(score, p_loc)
    w_pos = dw.dw_pos_weight(col(v), col(prior), mu, pos_form)[0, :, 0]
    p_neg = dw.neg_prob(col(iou), col(torch.ones_like(iou, dtype=torch.bool)), iou_threshold, gamma1, neg_form)[0, :, 0]
    return {"w_pos": w_pos, "w_neg": dw.dw_neg_weight(p_neg, score, gamma2), "p_neg": p_neg, "p_loc": p_loc, "v": v}


# The settings of :class:`~minidet.models.DualWeighting` that only change the weights, not the network.
WEIGHT_SETTINGS = ("mu", "beta", "gamma2", "pos_weight_form", "neg_prob_form", "consistency_beta", "neg_iou_upper")


@torch.no_grad()
def network_outputs(model: nn.Module, images: Tensor) -> dict[str, Any]:
    """What DW's weights are computed from, in eval mode: ``scores`` ``(B, A, C)``, ``boxes`` ``(B, A, 4)``,
    ``points`` ``(A, 2)``, ``strides`` ``(A,)`` (on the model's device) and ``level_sizes``. ``images``
    ``(B, 3, H, W)`` float is moved to the model's device."""
    was_training = model.training
    model.eval()
    try:
        out = model.dense_outputs(images.to(model.device))
    finally:
        model.train(was_training)
    return dict(zip(("scores", "boxes", "points", "strides", "level_sizes"), out))


@torch.no_grad()
def weight_maps(model: nn.Module, outputs: dict[str, Any], targets: list[dict[str, Tensor]], **settings: Any) -> dict[str, Any]:
    """The maps of :meth:`minidet.models.DualWeighting.weights` from cached :func:`network_outputs`, with
    any of :data:`WEIGHT_SETTINGS` overridden (e.g. ``gamma2=3.0, neg_prob_form="paper"``): the loss's own
    composition on a shallow copy of the model, so the network is not run again.

    Returns:
        ``prior``, ``w_pos``, ``iou``, ``p_cls``, ``p_loc``, ``inside``: ``(B, A, G)``; ``p_neg``, ``w_neg``:
        ``(B, A, C)``; and the ``outputs``.
    """
    unknown = set(settings) - set(WEIGHT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown DW weight settings {sorted(unknown)}; expected some of {WEIGHT_SETTINGS}")
    tuned = copy.copy(model)  # shares the parameters; only the plain attributes below differ
    vars(tuned).update(settings)
    device = outputs["scores"].device
    maps = tuned.weights(outputs["scores"], outputs["boxes"], outputs["points"], outputs["strides"],
                         *pad_targets(targets, device))
    return {**maps, **outputs}


def dw_maps(model: nn.Module, images: Tensor, targets: list[dict[str, Tensor]], **settings: Any) -> dict[str, Any]:
    """The intermediate maps of :meth:`minidet.models.DualWeighting.loss` for a batch, in eval mode: the same
    composition as the loss (GIoU -> ``p_loc``, ``p_cls``, centre prior, ``w_pos``, IoU -> ``P_neg`` ->
    ``w_neg``) with the model's own settings, or ``settings`` (see :func:`weight_maps`, which lists the
    returned maps; ``points`` ``(A, 2)``, ``strides`` ``(A,)``, ``level_sizes`` come with them)."""
    return weight_maps(model, network_outputs(model, images), targets, **settings)


def level_grids(values: Tensor, points: Tensor, level_sizes: list[int]) -> list[np.ndarray]:
    """Split ``(A,)`` per-point values into one ``(H_l, W_l)`` array per level (points in ``(level, y, x)``
    order, see :class:`~minidet.models.PointGenerator`)."""
    out = []
    for v, p in zip(values.split(level_sizes), points.split(level_sizes)):
        w = int((p[:, 1] == p[0, 1]).sum())  # points of the first row
        out.append(v.reshape(-1, w).float().cpu().numpy())
    return out


MAP_NAMES = {"prior": "centre prior", "w_pos": "$w^{pos}$", "w_neg": "$w^{neg}$ (its class)",
             "p_neg": "$P_{neg}$ (its class)", "iou": "IoU of predicted box", "p_cls": "$p_{cls}$", "p_loc": "$p_{loc}$"}


def _crop_window(image: Tensor, gt_box: Tensor, crop: float | None) -> tuple[float, float, float]:
    """``(cx, cy, half)`` of the square window shown around ``gt_box`` (see :func:`plot_weight_maps`)."""
    x1, y1, x2, y2 = gt_box.tolist()
    if not crop:
        return image.shape[-1] / 2, image.shape[-2] / 2, float(max(image.shape[-2:]))
    return (x1 + x2) / 2, (y1 + y2) / 2, max(crop * max(x2 - x1, y2 - y1), 64.0) / 2


def _level_panel(ax: Axes, gray: np.ndarray, grid: np.ndarray, stride: float, norm: Normalize, gt_box: Tensor,
                 window: tuple[float, float, float], title: str) -> Any:
    """One level's grid of values over the (gray) image, one cell per point, ``stride`` pixels wide; zero
    values left transparent; the ground truth dashed; the view cropped to ``window``. Returns the image."""
    h, w = grid.shape
    ax.imshow(gray, cmap="gray", vmin=0, vmax=1)
    shown = np.ma.masked_where(grid <= 0, grid)  # zero weight: let the image show through
    im = ax.imshow(shown, extent=(0, w * stride, h * stride, 0), cmap="magma", alpha=0.8, norm=norm)
    draw_detections(ax, None, gt_box[None], color="cyan", linestyle="--")
    cx, cy, half = window
    ax.set_xlim(max(0, cx - half), min(gray.shape[1], cx + half))
    ax.set_ylim(min(gray.shape[0], cy + half), max(0, cy - half))
    label_image_axes(ax, title)
    return im


def plot_weight_maps(maps: dict[str, Any], image: Tensor, gt_box: Tensor, gt_index: int, gt_label: int,
                     quantities: tuple[str, ...] = ("prior", "w_pos", "w_neg"), image_index: int = 0,
                     levels: tuple[int, ...] | None = None, crop: float | None = 3.0, title: str = "",
                     dpi: float = 72) -> Figure:
    """Rows: ``quantities`` of ground truth ``gt_index`` (``w_neg`` / ``p_neg`` of its class ``gt_label``);
    columns: pyramid levels. Each panel lays the level's grid over the image (one cell per point,
    ``stride`` pixels wide), with the ground truth dashed; a row shares one colour scale. ``crop``: show
    a window ``crop`` times the box's longer side (at least 64 px) around it; ``None``: the whole image."""
    strides = maps["strides"].split(maps["level_sizes"])
    levels = tuple(range(len(maps["level_sizes"]))) if levels is None else levels
    fig, axes = plt.subplots(len(quantities), len(levels), figsize=(2.8 * len(levels), 2.6 * len(quantities)),
                             squeeze=False, constrained_layout=True, dpi=dpi)
    window, gray = _crop_window(image, gt_box, crop), image.permute(1, 2, 0).float().mean(-1).cpu().numpy()
    for row, q in zip(axes, quantities):
        col = gt_label if q in ("p_neg", "w_neg", "scores") else gt_index  # per class or per ground truth
        grids = level_grids(maps[q][image_index, :, col], maps["points"], maps["level_sizes"])
        norm = Normalize(0, max(float(grids[l].max()) for l in levels) or 1.0)
        for ax, l in zip(row, levels):
            s = float(strides[l][0])
            im = _level_panel(ax, gray, grids[l], s, norm, gt_box, window, f"P{l + 3} ({s:.0f} px): {MAP_NAMES.get(q, q)}")
        fig.colorbar(im, ax=list(row), shrink=0.8, label=MAP_NAMES.get(q, q))
    fig.suptitle(title)
    return fig


def draw_dw_explorer(mu: float = 5.0, beta: float = 5.0, gamma2: float = 2.0, iou: float = 0.7, score: float = 0.5,
                     form: str = "code", figsize: tuple[float, float] = (14, 4)) -> Figure:
    """One extra candidate ``(iou, score)`` joins the four :data:`FIG1_SAMPLES` of the same ground truth
    (so ``w_pos``'s normalisation and ``P_neg``'s min/max are defined). Panels: (1) its ``(w_pos, w_neg)``
    under GFL, VFL and DW (``form`` for both DW switches); (2) its DW ``w_pos`` against its score and
    (3) its ``w_neg`` against its IoU, both forms (the other one dashed)."""
    fixed_iou = torch.tensor([v[0] for v in FIG1_SAMPLES.values()], dtype=torch.float64)
    fixed_score = torch.tensor([v[1] for v in FIG1_SAMPLES.values()], dtype=torch.float64)

    def sample_dw(i: Tensor, s: Tensor, f: str) -> dict[str, Tensor]:  # i, s: (K,) values of the extra candidate
        k = len(i)
        ious = torch.cat([fixed_iou.expand(k, 4), i[:, None]], 1).T  # (5, K): each column one toy ground truth
        scores = torch.cat([fixed_score.expand(k, 4), s[:, None]], 1).T
        out = [dw_toy_weights(ious[:, j], scores[:, j], mu=mu, beta=beta, gamma2=gamma2, pos_form=f, neg_form=f) for j in range(k)]
        return {key: torch.stack([o[key][-1] for o in out]) for key in ("w_pos", "w_neg")}

    i0, s0 = torch.tensor([iou], dtype=torch.float64), torch.tensor([score], dtype=torch.float64)
    pairs = {"GFL": gfl_weights(i0, s0), "VFL": vfl_weights(i0, s0)}
    d = sample_dw(i0, s0, form)
    pairs[f"DW ({form})"] = (d["w_pos"], d["w_neg"])
    fig, (ax_b, ax_p, ax_n) = plt.subplots(1, 3, figsize=figsize)
    x = np.arange(len(pairs))
    ax_b.bar(x - 0.2, [float(p[0]) for p in pairs.values()], 0.4, color="tab:blue", label="$w^{pos}$")
    ax_b.bar(x + 0.2, [float(p[1]) for p in pairs.values()], 0.4, color="tab:red", label="$w^{neg}$")
    ax_b.set_xticks(x, list(pairs))
    ax_b.set_ylabel("weight (unitless)")
    ax_b.set_title(f"the sample's pair (IoU {iou:.2f}, score {score:.2f})")
    ax_b.legend(fontsize=8)
    grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    for f in ("code", "paper"):
        style = "-" if f == form else "--"
        ax_p.plot(grid, sample_dw(torch.full_like(grid, iou), grid, f)["w_pos"], style, color="tab:blue", label=f"{f} form")
        ax_n.plot(grid, sample_dw(grid, torch.full_like(grid, score), f)["w_neg"], style, color="tab:red", label=f"{f} form")
    ax_p.plot([score], [float(d["w_pos"])], "ko")
    ax_n.plot([iou], [float(d["w_neg"])], "ko")
    ax_n.axvline(0.5, color="0.6", lw=0.8)
    ax_p.set(xlabel="score $s$ of the sample", ylabel="$w^{pos}$ (unitless)", title=f"$w^{{pos}}$ vs score at IoU {iou:.2f}")
    ax_n.set(xlabel="IoU of the sample's predicted box", ylabel="$w^{neg}$ (unitless)", title=f"$w^{{neg}}$ vs IoU at score {score:.2f}")
    for ax in (ax_p, ax_n):
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
    fig.suptitle(f"one extra candidate next to Fig. 1's A-D: $\\mu$ = {mu:.1f}, $\\beta$ = {beta:.1f}, $\\gamma_2$ = {gamma2:.1f}")
    fig.tight_layout()
    return fig


def dw_weight_explorer(mu: float = 5.0, beta: float = 5.0, gamma2: float = 2.0, iou: float = 0.7, score: float = 0.5,
                       form: str = "code"):
    """ipywidgets explorer of :func:`draw_dw_explorer`: sliders for mu, beta, gamma_2 and the sample's IoU
    and score, a code/paper toggle. Returns the widget (see :func:`minidet.viz.widgets.live_figure`)."""
    import ipywidgets as widgets

    from minidet.viz.widgets import float_slider as slider, live_figure

    controls = {"mu": slider(mu, 0.0, 10.0, 0.5, "mu"), "beta": slider(beta, 0.5, 10.0, 0.5, "beta"),
                "gamma2": slider(gamma2, 0.0, 4.0, 0.25, "gamma_2"), "iou": slider(iou, 0.01, 0.99, 0.01, "IoU"),
                "score": slider(score, 0.01, 0.99, 0.01, "score"),
                "form": widgets.ToggleButtons(options=["code", "paper"], value=form, description="form")}
    return live_figure(draw_dw_explorer, controls, "static snapshot at the default setting")


class DWMapSource:
    """DW snapshots and images for :func:`dw_map_explorer`: each snapshot's model is loaded once and its
    :func:`network_outputs` on an image computed once per ``(snapshot, image)`` and kept (on the model's
    device), so that a change of a weight setting only recomputes the weights (:func:`weight_maps`).

    Args:
        snapshots: name -> a DW model, or a checkpoint path (loaded with
            :func:`~minidet.engine.experiment.load_detector` on ``device`` when first used).
        dataset: ``dataset[i] -> (image (3, H, W) float, {"boxes": (G, 4), "labels": (G,)})``.
    """

    def __init__(self, snapshots: Mapping[str, nn.Module | str | Path], dataset: Sequence, device: str | torch.device = "cpu"):
        if not snapshots:
            raise ValueError("no DW snapshot given")
        self.snapshots, self.dataset, self.device = dict(snapshots), dataset, device
        self._models: dict[str, nn.Module] = {}
        self._outputs: dict[tuple[str, int], dict[str, Any]] = {}

    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            snap = self.snapshots[name]
            if not isinstance(snap, nn.Module):
                from minidet.engine.experiment import load_detector

                snap = load_detector(snap, self.device)[0]
            self._models[name] = snap
        return self._models[name]

    def sample(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        image, target = self.dataset[index]
        return image.as_subclass(Tensor), {"boxes": target["boxes"].as_subclass(Tensor), "labels": target["labels"]}

    def maps(self, name: str, index: int, **settings: Any) -> dict[str, Any]:
        """:func:`weight_maps` of image ``index`` under snapshot ``name`` (the network runs on a first call only)."""
        key = (name, index)
        if key not in self._outputs:
            self._outputs[key] = network_outputs(self.model(name), self.sample(index)[0][None])
        return weight_maps(self.model(name), self._outputs[key], [self.sample(index)[1]], **settings)


MAP_QUANTITIES = ("prior", "w_pos", "p_neg", "w_neg")
W_NEG_RANGE = (1e-6, 1.0)  # w_neg = P_neg s^gamma2 spans decades: a fixed log scale shows gamma2's effect
WIDTHS = (1, 1, 1, 1, 1.5, 1.5)  # four map columns, two scatter plots


def _level_tiles(gray: np.ndarray, grids: list[np.ndarray], strides: list[float], levels: list[int], norm: Normalize,
                 window: tuple[int, int, int, int], gap: int = 6) -> np.ndarray:
    """The levels' grids coloured (magma, ``norm``) at 80 % over the gray image, each cropped to ``window``
    ``(x0, y0, x1, y1)`` and stacked top to bottom with ``gap`` white rows: one RGB array, so one ``imshow``
    draws every level (a redraw stays fast). Zero values leave the image visible."""
    x0, y0, x1, y1 = window
    base = gray[y0:y1, x0:x1, None]
    cmap, tiles = plt.get_cmap("magma"), []
    for l in levels:
        s, grid = int(strides[l]), grids[l]
        rgba = cmap(norm(np.where(grid > 0, grid, np.nan)).filled(np.nan))  # small (H_l, W_l, 4); NaN -> "bad": alpha 0
        rgba = np.repeat(np.repeat(rgba, s, axis=0), s, axis=1)[y0:y1, x0:x1]  # one cell per point, s px wide
        alpha = 0.8 * rgba[..., 3:]
        tiles += [base * (1 - alpha) + rgba[..., :3] * alpha, np.ones((gap, x1 - x0, 3))]
    return np.concatenate(tiles[:-1])


class DWMapFigure:
    """The figure of :func:`draw_dw_maps`, kept across redraws: its axes and colour bars are made once and
    a redraw only sets new data (making matplotlib axes is most of a figure's cost)."""

    def __init__(self, dpi: float = 60):
        self.dpi, self.fig, self.marks = dpi, None, []

    def _build(self) -> None:
        self.fig = fig = plt.figure(figsize=(15, 6), dpi=self.dpi)
        self.gs = gs = fig.add_gridspec(1, 6, width_ratios=WIDTHS, left=0.04, right=0.99, wspace=0.3)
        self.maps = {}
        for c, q in enumerate(MAP_QUANTITIES):
            ax = fig.add_subplot(gs[0, c])
            self.maps[q] = ax.imshow(np.zeros((2, 2, 3)), interpolation="nearest")
            ax.set_yticks([])
            ax.xaxis.set_major_locator(MaxNLocator(3))  # few labels: text is most of a redraw's time
            ax.set(xlabel="x (px)", title=MAP_NAMES[q])
        self.points = {}
        for c, q in ((4, "w_pos"), (5, "w_neg")):
            ax = fig.add_subplot(gs[0, c])
            self.points[q] = ax.scatter([], [], c=[], cmap="magma", s=24, edgecolors="0.5", linewidths=0.4)
            ax.set(ylim=(0, 1), xlabel="score $s$ of its class", ylabel="IoU of the point's predicted box")
            self.threshold = ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
        for q in MAP_QUANTITIES:  # the maps' colour bars follow their scatter's (w_pos, w_neg) or stay [0, 1]
            sm = self.points.get(q) or plt.cm.ScalarMappable(Normalize(0, 1), "magma")
            cb = fig.colorbar(sm, ax=self.maps[q].axes, orientation="horizontal", location="bottom", pad=0.2)
            cb.ax.tick_params(labelsize=8)
        self.points["w_neg"].set_norm(LogNorm(*W_NEG_RANGE, clip=True))
        self.title = fig.suptitle("", fontsize=10)

    def draw(self, maps: dict[str, Any], image: Tensor, gt_box: Tensor, gt_index: int, gt_label: int,
             level: int | None = None, iou_threshold: float = 0.5, crop: float | None = 2.5, title: str = "") -> Figure:
        """See :func:`draw_dw_maps`; returns the (same) figure with the new data."""
        if self.fig is None:
            self._build()
        sizes = maps["level_sizes"]
        inside = maps["inside"][0, :, gt_index]
        level_of = torch.repeat_interleave(torch.arange(len(sizes), device=inside.device), torch.tensor(sizes, device=inside.device))
        levels = [level] if level is not None else [l for l in range(len(sizes)) if inside[level_of == l].any()] or [0]
        cols = {q: maps[q][0, :, gt_label if q in ("p_neg", "w_neg") else gt_index] for q in MAP_QUANTITIES}
        grids = {q: level_grids(v, maps["points"], sizes) for q, v in cols.items()}
        norms = {"prior": Normalize(0, 1), "p_neg": Normalize(0, 1), "w_neg": LogNorm(*W_NEG_RANGE, clip=True),
                 "w_pos": Normalize(0, max(float(grids["w_pos"][l].max()) for l in levels) or 1.0)}
        cx, cy, half = _crop_window(image, gt_box, crop)
        h, w = image.shape[-2:]
        win = (max(0, int(cx - half)), max(0, int(cy - half)), min(w, int(cx + half)), min(h, int(cy + half)))
        gray = image.permute(1, 2, 0).float().mean(-1).cpu().numpy()
        strides = [float(st[0]) for st in maps["strides"].split(sizes)]
        tile_h, gap = win[3] - win[1], 6
        # Height: the map columns' tiles at their aspect, plus fixed inches for the titles and colour bars.
        col_in = 15 * 0.95 / (sum(WIDTHS) + 0.3 * (len(WIDTHS) - 1))
        maps_in = col_in * (len(levels) * (tile_h + gap) - gap) / (win[2] - win[0])
        fig_h = min(12.0, max(4.5, maps_in + 2.2))
        self.fig.set_size_inches(15, fig_h)
        self.gs.update(top=1 - 0.8 / fig_h, bottom=1.4 / fig_h)
        for m in self.marks:
            m.remove()
        self.marks = []
        x1, y1, x2, y2 = gt_box.tolist()
        for q, im in self.maps.items():
            mosaic = _level_tiles(gray, grids[q], strides, levels, norms[q], win, gap)
            im.set_data(mosaic)
            im.set_extent((win[0], win[2], mosaic.shape[0], 0))
            ax = im.axes
            for k, l in enumerate(levels):
                top = k * (tile_h + gap) - win[1]  # y of the image's row 0 in tile k
                self.marks.append(ax.add_patch(plt.Rectangle((x1, y1 + top), x2 - x1, y2 - y1, fill=False, ec="cyan", ls="--", lw=1)))
                if q == MAP_QUANTITIES[0]:  # the level names once, in the first column
                    self.marks.append(ax.text(win[0] + 2, k * (tile_h + gap) + 2, f"P{l + 3} ({strides[l]:.0f} px)", color="w",
                                              fontsize=8, va="top", bbox={"fc": "k", "alpha": 0.5, "lw": 0, "pad": 1}))
            ax.set(xlim=(win[0], win[2]), ylim=(mosaic.shape[0], 0))
        self.maps[MAP_QUANTITIES[0]].axes.set_ylabel(f"one tile per level; tile: y {win[1]}-{win[3]} px")
        shown = inside & torch.isin(level_of, torch.tensor(levels, device=inside.device))
        x = maps["p_cls"][0, shown, gt_index].float().cpu().numpy()
        y = maps["iou"][0, shown, gt_index].float().cpu().numpy()
        for q, sc in self.points.items():
            sc.set_offsets(np.stack([x, y], 1))
            sc.set_array(cols[q][shown].float().cpu().numpy().clip(min=1e-12))
            sc.set_norm(norms[q]) if q == "w_pos" else None
            sc.axes.set(xlim=(0, max(1e-3, float(x.max(initial=0))) * 1.05), title=f"{len(x)} candidates by {MAP_NAMES[q]}")
        self.points["w_pos"].set_clim(norms["w_pos"].vmin, norms["w_pos"].vmax)
        self.threshold.set_ydata([iou_threshold] * 2)
        self.title.set_text(title)
        return self.fig


def draw_dw_maps(maps: dict[str, Any], image: Tensor, gt_box: Tensor, gt_index: int, gt_label: int,
                 level: int | None = None, iou_threshold: float = 0.5, crop: float | None = 2.5, title: str = "",
                 dpi: float = 60) -> Figure:
    """The dual weights of ground truth ``gt_index`` (class ``gt_label``) of image 0 of ``maps``
    (:func:`weight_maps`). Columns: centre prior, ``w_pos``, ``P_neg`` and ``w_neg`` of its class over the
    image, one tile per pyramid level (``level``, or every level with a point inside the box; one cell per
    point, ``stride`` px wide; a window ``crop`` times the box's longer side, at least 64 px); then the
    candidates (points inside the box on those levels) as (score of its class, IoU of the predicted box)
    coloured by ``w_pos`` and by ``w_neg``, on the maps' colour scales (``w_neg``: log scale :data:`W_NEG_RANGE`)."""
    return DWMapFigure(dpi).draw(maps, image, gt_box, gt_index, gt_label, level, iou_threshold, crop, title)


def dw_map_explorer(source: DWMapSource, images: Sequence[int], image: int | None = None, gt: int = 0,
                    snapshot: str | None = None, mu: float = 5.0, beta: float = 5.0, gamma2: float = 2.0,
                    pos_form: str = "code", neg_form: str = "code", level: str = "all", paper_beta: float = 0.8,
                    class_names: Sequence[str] | None = None):
    """ipywidgets explorer of :func:`draw_dw_maps` over trained snapshots: the image (of ``images``) and its
    ground-truth object; the snapshot (training moment); sliders for mu, beta and gamma_2; the paper or
    code form of ``w_pos`` and of ``P_neg``; the pyramid level or all. Each form has its own beta: the
    code's ``p_loc = exp(-beta GIoU loss)`` (``beta``, 5) and the paper's consistency
    ``s^beta IoU^(1 - beta)`` (``paper_beta``, the model's ``consistency_beta``, 0.8). A change of image or snapshot runs
    the network once (then cached, :class:`DWMapSource`); every other change recomputes the weights only.
    Returns the widget (see :func:`minidet.viz.widgets.live_figure`)."""
    import ipywidgets as widgets

    from minidet.viz.widgets import float_slider, live_figure

    names = list(source.snapshots)
    label = lambda c: class_names[c] if class_names else f"class {c}"  # noqa: E731

    def objects(index: int) -> list[tuple[str, int]]:
        t = source.sample(index)[1]
        return [(f"{g}: {label(int(c))}, {float(b[2] - b[0]):.0f} x {float(b[3] - b[1]):.0f} px", g)
                for g, (b, c) in enumerate(zip(t["boxes"], t["labels"]))]

    image = images[0] if image is None else image
    controls = {
        "image": widgets.Dropdown(options=[(f"image {i} ({len(source.sample(i)[1]['labels'])} objects)", i) for i in images],
                                  value=image, description="image"),
        "gt": widgets.Dropdown(options=objects(image), value=gt, description="object"),
        "snapshot": widgets.SelectionSlider(options=names, value=snapshot or names[-1], description="snapshot",
                                            continuous_update=False),
        "mu": float_slider(mu, 0.0, 10.0, 0.5, "mu"), "beta": float_slider(beta, 0.5, 10.0, 0.5, "beta (code)"),
        "gamma2": float_slider(gamma2, 0.0, 4.0, 0.25, "gamma_2"),
        "paper_beta": float_slider(paper_beta, 0.05, 1.0, 0.05, "beta (paper)"),
        "pos_form": widgets.ToggleButtons(options=list(dw.FORMS), value=pos_form, description="w_pos form"),
        "neg_form": widgets.ToggleButtons(options=list(dw.FORMS), value=neg_form, description="P_neg form"),
        "level": widgets.Dropdown(options=["all"] + [f"P{l + 3}" for l in range(5)], value=level, description="level"),
    }
    # Before live_figure's observer: a new image first gets its own objects.
    controls["image"].observe(lambda ch: setattr(controls["gt"], "options", objects(ch["new"])), names="value")

    live, drawn = DWMapFigure(), []  # the first figure is the static snapshot; later ones redraw `live` in place

    def draw(image: int, gt: int, snapshot: str, mu: float, beta: float, gamma2: float, paper_beta: float,
             pos_form: str, neg_form: str, level: str) -> Figure:
        img, target = source.sample(image)
        gt = min(gt or 0, len(target["labels"]) - 1)
        model = source.model(snapshot)
        maps = source.maps(snapshot, image, mu=mu, beta=beta, gamma2=gamma2, consistency_beta=paper_beta,
                           pos_weight_form=pos_form, neg_prob_form=neg_form)
        c = int(target["labels"][gt])
        s_pos, w_in = float(maps["w_pos"][0, :, gt].sum()), maps["w_neg"][0, maps["inside"][0, :, gt], c]
        mean_in = float(w_in.mean()) if len(w_in) else 0.0
        # Plain unicode, not mathtext: a title that changes on every redraw would be parsed again each time.
        title = (f"snapshot {snapshot}, image {image}, object {gt} ({label(c)}): μ = {mu:g}, β = {beta if pos_form == 'code' else paper_beta:g} "
                 f"({pos_form} form), "
                 f"γ₂ = {gamma2:g}, P_neg {neg_form} form  |  Σ w_pos = {s_pos:.3f}, mean w_neg in the box = {mean_in:.2e}")
        painter = live if drawn else DWMapFigure()
        drawn.append(image)
        return painter.draw(maps, img, target["boxes"][gt], gt, c, None if level == "all" else int(level[1:]) - 3,
                            model.neg_iou_threshold, title=title)

    return live_figure(draw, controls, "static snapshot at the initial setting")


@torch.no_grad()
def kept_detection_ious(model: torch.nn.Module, dataset, indices: list[int], score_thresh: float = 0.3,
                        batch_size: int = 8) -> np.ndarray:
    """IoU of every detection with score ``>= score_thresh`` with its best ground truth of the same class
    (0 if the image has none of that class), over ``dataset[i]`` for ``i`` in ``indices`` (eval mode).
    Returns a float array, one entry per kept detection."""
    from minidet.data import collate_detection

    model.eval()
    out = []
    for start in range(0, len(indices), batch_size):
        batch = collate_detection([dataset[i] for i in indices[start:start + batch_size]]).to(model.device)
        for det, tgt in zip(model(batch.images, image_sizes=batch.image_sizes), batch.targets):
            keep = det["scores"] >= score_thresh
            boxes, labels = det["boxes"][keep], det["labels"][keep]
            iou = box_iou(boxes, tgt["boxes"]) * (labels[:, None] == tgt["labels"][None])  # (K, G) same class only
            out.append(iou.max(1).values if iou.shape[1] else torch.zeros(len(boxes)))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)
