"""Pictures of Dual Weighting (Li et al., "A Dual Weighting Label Assignment Scheme for Object Detection",
CVPR 2022, https://arxiv.org/abs/2203.09730): the weight maps of a detector over an image, the coupled
weights of GFL / VFL next to DW's decoupled pair (the paper's Fig. 1), and an explorer.

Every DW number here comes from :mod:`minidet.assigners.dw_weights`, the functions the detector trains
with. A classification loss is written, as in the DW paper, per sample and class as

.. math:: L = -w^{pos} \\log s - w^{neg} \\log(1 - s)

with ``s`` the predicted score; GFL and VFL are rewritten in that form below (they are reference formulas
for the pictures, not minidet losses).
"""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.ops import box_iou

from minidet.assigners import dw_weights as dw
from minidet.boxes.ops import pad_targets
from minidet.viz.boxes import draw_detections, label_image_axes

# Four candidate points of one ground truth, as (IoU of the predicted box, score): the situation of the
# paper's Fig. 1 (good at both, well localised but unsure, confident but badly localised, poor at both).
# The values are ours, chosen so that every IoU is above DW's threshold 0.5.
FIG1_SAMPLES: dict[str, tuple[float, float]] = {"A": (0.90, 0.85), "B": (0.90, 0.30), "C": (0.60, 0.85), "D": (0.55, 0.30)}


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


@torch.no_grad()
def dw_maps(model: torch.nn.Module, images: Tensor, targets: list[dict[str, Tensor]]) -> dict[str, Any]:
    """The intermediate maps of :meth:`minidet.models.DualWeighting.loss` for a batch, in eval mode.

    The same composition as the loss (GIoU -> ``p_loc``, ``p_cls``, centre prior, ``w_pos``, IoU ->
    ``P_neg`` -> ``w_neg``) with the model's own settings.

    Returns:
        ``prior``, ``w_pos``, ``iou``, ``p_cls``, ``p_loc``: ``(B, A, G)``; ``p_neg``, ``w_neg``, ``scores``:
        ``(B, A, C)``; ``boxes`` ``(B, A, 4)``; ``points`` ``(A, 2)``, ``strides`` ``(A,)``, ``level_sizes``.
    """
    was_training = model.training
    model.eval()
    images = images.to(model.device)
    targets = [{k: v.to(model.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    scores, boxes, points, strides, level_sizes = model.dense_outputs(images)
    model.train(was_training)
    maps = model.weights(scores, boxes, points, strides, *pad_targets(targets, images.device))
    maps.pop("inside")
    return {**maps, "scores": scores, "boxes": boxes, "points": points, "strides": strides, "level_sizes": level_sizes}


def level_grids(values: Tensor, points: Tensor, level_sizes: list[int]) -> list[np.ndarray]:
    """Split ``(A,)`` per-point values into one ``(H_l, W_l)`` array per level (points in ``(level, y, x)``
    order, see :class:`~minidet.models.PointGenerator`)."""
    out = []
    for v, p in zip(values.split(level_sizes), points.split(level_sizes)):
        w = int((p[:, 1] == p[0, 1]).sum())  # points of the first row
        out.append(v.reshape(-1, w).float().cpu().numpy())
    return out


def plot_weight_maps(maps: dict[str, Any], image: Tensor, gt_box: Tensor, gt_index: int, gt_label: int,
                     quantities: tuple[str, ...] = ("prior", "w_pos", "w_neg"), image_index: int = 0,
                     levels: tuple[int, ...] | None = None, crop: float | None = 3.0, title: str = "") -> Figure:
    """Rows: ``quantities`` of ground truth ``gt_index`` (``w_neg`` / ``p_neg`` of its class ``gt_label``);
    columns: pyramid levels. Each panel lays the level's grid over the image (one cell per point,
    ``stride`` pixels wide), with the ground truth dashed; a row shares one colour scale. ``crop``: show
    a window ``crop`` times the box's longer side (at least 64 px) around it; ``None``: the whole image."""
    strides = maps["strides"].split(maps["level_sizes"])
    levels = tuple(range(len(maps["level_sizes"]))) if levels is None else levels
    fig, axes = plt.subplots(len(quantities), len(levels), figsize=(2.8 * len(levels), 2.6 * len(quantities)),
                             squeeze=False, constrained_layout=True)
    x1, y1, x2, y2 = gt_box.tolist()
    half = max(crop * max(x2 - x1, y2 - y1), 64.0) / 2 if crop else float(max(image.shape[-2:]))
    cx, cy = ((x1 + x2) / 2, (y1 + y2) / 2) if crop else (image.shape[-1] / 2, image.shape[-2] / 2)
    names = {"prior": "centre prior", "w_pos": "$w^{pos}$", "w_neg": "$w^{neg}$ (its class)", "p_neg": "$P_{neg}$ (its class)",
             "iou": "IoU of predicted box", "p_cls": "$p_{cls}$", "p_loc": "$p_{loc}$"}
    for row, q in zip(axes, quantities):
        col = gt_label if q in ("p_neg", "w_neg", "scores") else gt_index  # per class or per ground truth
        grids = level_grids(maps[q][image_index, :, col], maps["points"], maps["level_sizes"])
        vmax = max(float(grids[l].max()) for l in levels) or 1.0
        for ax, l in zip(row, levels):
            s = float(strides[l][0])
            h, w = grids[l].shape
            ax.imshow(image.permute(1, 2, 0).float().mean(-1).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            shown = np.ma.masked_where(grids[l] <= 0, grids[l])  # zero weight: let the image show through
            im = ax.imshow(shown, extent=(0, w * s, h * s, 0), cmap="magma", alpha=0.8, vmin=0, vmax=vmax)
            draw_detections(ax, None, gt_box[None], color="cyan", linestyle="--")
            ax.set_xlim(max(0, cx - half), min(image.shape[-1], cx + half))
            ax.set_ylim(min(image.shape[-2], cy + half), max(0, cy - half))
            label_image_axes(ax, f"P{l + 3} ({s:.0f} px): {names.get(q, q)}")
        fig.colorbar(im, ax=list(row), shrink=0.8, label=names.get(q, q))
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

    from minidet.viz.widgets import live_figure

    def slider(value, lo, hi, step, name):
        return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=name, continuous_update=False)

    controls = {"mu": slider(mu, 0.0, 10.0, 0.5, "mu"), "beta": slider(beta, 0.5, 10.0, 0.5, "beta"),
                "gamma2": slider(gamma2, 0.0, 4.0, 0.25, "gamma_2"), "iou": slider(iou, 0.01, 0.99, 0.01, "IoU"),
                "score": slider(score, 0.01, 0.99, 0.01, "score"),
                "form": widgets.ToggleButtons(options=["code", "paper"], value=form, description="form")}
    return live_figure(draw_dw_explorer, controls, "static snapshot at the default setting")


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
