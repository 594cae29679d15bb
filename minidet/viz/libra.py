"""Plots and explorers for Libra R-CNN (lesson 06): sampled negatives' IoU, Balanced L1 vs smooth L1,
and the Balanced Feature Pyramid's integrated feature and residuals."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from minidet.boxes.ops import pad_targets
from minidet.losses.balanced_l1 import balanced_l1_grad, balanced_l1_loss
from minidet.samplers import iou_balanced_neg_sample, random_sample
from minidet.viz.widgets import live_figure

HARD_IOU = 0.05  # Libra R-CNN, Fig. 3: a negative with IoU > 0.05 counts as hard


def hard_fraction(ious: Tensor) -> float:
    """Share of ``ious`` above 0.05, the paper's definition of a hard negative."""
    return float((ious > HARD_IOU).float().mean()) if ious.numel() else 0.0


def sample_negatives(neg_ious: Tensor, num: int, method: str = "random", num_bins: int = 3, floor_thr: float = -1.0,
                     floor_fraction: float = 0.0, seed: int = 0) -> Tensor:
    """IoUs of ``num`` negatives drawn from ``neg_ious`` ``(M,)`` at random or IoU-balanced."""
    g = torch.Generator().manual_seed(seed)
    if method == "random":
        return neg_ious[random_sample(torch.ones(1, len(neg_ious), dtype=torch.bool), num, g)[0]]
    return neg_ious[iou_balanced_neg_sample(neg_ious, num, num_bins, floor_thr, floor_fraction, g)]


@torch.no_grad()
def negative_pool(model: torch.nn.Module, images: Tensor, targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """The negatives a Faster R-CNN's sampler chooses from, image by image: the model's own proposals plus
    the ground truths, assigned as in training (IoU < 0.5 with every object).

    Returns one dict per image with ``iou`` ``(M,)`` (each negative's highest IoU with a ground truth) and
    ``bg_loss`` ``(M,)`` (the R-CNN head's cross-entropy for "background" on it: the negatives with the
    largest values are the *hard* negatives that online hard example mining would pick).
    """
    model.eval()
    images = images.to(model.device)
    image_sizes = torch.tensor([images.shape[-2:]] * images.shape[0], device=model.device)
    feats = model.features(images)
    proposals, _, valid, _ = model.rpn(feats, image_sizes)
    gt_boxes, _, gt_valid = pad_targets(targets, model.device)
    cand, _, assign = model.sampler.assign(proposals, valid, gt_boxes, gt_valid)
    logits, _, _ = model.rcnn_head(feats, cand, images)
    bg_loss = -torch.log_softmax(logits.float(), -1)[..., model.num_classes]  # (B, N)
    return [{"iou": assign.max_iou[i][assign.neg[i]].clamp(min=0), "bg_loss": bg_loss[i][assign.neg[i]]}
            for i in range(images.shape[0])]


def hardest(pool: list[dict[str, Tensor]], num: int) -> Tensor:
    """IoUs of the ``num`` negatives with the largest background loss of every image, concatenated."""
    return torch.cat([p["iou"][p["bg_loss"].topk(min(num, len(p["iou"]))).indices] for p in pool])


def plot_neg_iou_hist(ax: Axes, samples: Mapping[str, Tensor], candidates: Tensor | None = None, bins: int = 25,
                      title: str = "IoU of the sampled negatives") -> Axes:
    """Histograms (as fractions) of the IoU of several sets of sampled negatives, with the share of hard
    negatives (IoU > 0.05) in the legend; ``candidates`` adds the pool they were drawn from."""
    upper = max(float(v.max()) for v in samples.values() if v.numel()) if samples else 0.5
    edges = np.linspace(0, max(upper, 1e-3), bins + 1)
    if candidates is not None:
        ax.hist(candidates.cpu().numpy(), edges, weights=np.full(len(candidates), 1 / max(1, len(candidates))), color="0.8",
                label=f"all candidates ({100 * hard_fraction(candidates):.0f} % hard)")
    for i, (name, v) in enumerate(samples.items()):
        ax.hist(v.cpu().numpy(), edges, weights=np.full(len(v), 1 / max(1, len(v))), histtype="step", lw=2, color=f"C{i}",
                label=f"{name} ({100 * hard_fraction(v):.0f} % hard)")
    ax.axvline(HARD_IOU, color="k", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set(xlabel="IoU with the best ground truth", ylabel="fraction of negatives (log)", title=title)
    ax.legend(fontsize=8)
    return ax


def draw_sampler_explorer(neg_ious: Tensor, num: int, num_bins: int = 3, floor_thr: float = -1.0, floor_fraction: float = 0.0,
                          figsize: tuple[float, float] = (11, 4), images: int = 1) -> Figure:
    """Left: IoU histograms of random vs IoU-balanced negatives; right: how many each IoU bin receives.
    ``neg_ious`` pools the candidates of ``images`` images, and ``num`` negatives are drawn from the pool
    (``num / images`` per image, as the sampler draws them one image at a time)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=figsize)
    rnd = sample_negatives(neg_ious, num, "random")
    bal = sample_negatives(neg_ious, num, "iou_balanced", num_bins, floor_thr, floor_fraction)
    plot_neg_iou_hist(a, {"random": rnd, f"IoU-balanced, K={num_bins}": bal}, neg_ious)
    lower = max(floor_thr, 0.0)
    edges = np.linspace(lower, float(neg_ious.max()), num_bins + 1)
    x = np.arange(num_bins)
    count = lambda v: np.histogram(v.cpu().numpy().clip(lower, edges[-1]), edges)[0]  # noqa: E731
    b.bar(x - 0.2, count(neg_ious) * num / max(1, len(neg_ious)), 0.4, color="0.7", label="random (expected)")
    b.bar(x + 0.2, count(bal), 0.4, color="C1", label="IoU-balanced")
    b.axhline(num * (1 - floor_fraction) / num_bins, color="C1", ls="--", lw=1, label="N / K")
    b.set_xticks(x, [f"[{edges[k]:.2f}, {edges[k + 1]:.2f})" for k in range(num_bins)], rotation=30, fontsize=8)
    note = f"; floor IoU < {floor_thr:g}: {int((bal < floor_thr).sum())} drawn" if floor_thr >= 0 else ""
    b.set(xlabel="IoU bin", ylabel="negatives drawn", title=f"{num} negatives from {images} image{'s' if images > 1 else ''}"
          + (f" ({num / images:g} per image)" if images > 1 else "") + note)
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sampler_explorer(neg_ious: Tensor, num: int = 192, images: int = 1):
    """Sliders for ``K``, the floor threshold and the floor fraction over :func:`draw_sampler_explorer`
    (``neg_ious``: the candidates of ``images`` images, ``num``: negatives drawn from all of them)."""
    import ipywidgets as w

    controls = {
        "num_bins": w.IntSlider(value=3, min=1, max=8, description="K (bins)"),
        "floor_thr": w.FloatSlider(value=-1.0, min=-1.0, max=0.3, step=0.01, description="floor_thr"),
        "floor_fraction": w.FloatSlider(value=0.0, min=0.0, max=0.9, step=0.05, description="floor_fraction"),
    }
    return live_figure(lambda **kw: draw_sampler_explorer(neg_ious, num, images=images, **kw), controls)


def draw_balanced_l1(alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0, smooth_beta: float = 1.0,
                     xmax: float = 3.0, figsize: tuple[float, float] = (11, 4)) -> Figure:
    """Loss and gradient of Balanced L1 and smooth L1 over the regression error ``x``; the gradient jump at
    ``|x| = beta`` (non-zero unless ``beta = 1``) is printed in the title."""
    x = torch.linspace(0, xmax, 1201, dtype=torch.float64)
    bl = balanced_l1_loss(x, torch.zeros_like(x), alpha, gamma, beta)
    bg = balanced_l1_grad(x, alpha, gamma, beta)
    sl = torch.where(x < smooth_beta, 0.5 * x ** 2 / smooth_beta, x - 0.5 * smooth_beta)
    sg = torch.clamp(x / smooth_beta, max=1.0)
    eps = torch.tensor([beta - 1e-9, beta + 1e-9], dtype=torch.float64)
    jump = float(balanced_l1_grad(eps, alpha, gamma, beta).diff())
    fig, (a, b) = plt.subplots(1, 2, figsize=figsize)
    a.plot(x, bl, label=f"balanced L1 (α={alpha:g}, γ={gamma:g}, β={beta:g})")
    a.plot(x, sl, "--", label=f"smooth L1 (β={smooth_beta:g})")
    a.set(xlabel="|x| (regression error)", ylabel="loss", title="loss")
    b.plot(x, bg, label="balanced L1")
    b.plot(x, sg, "--", label="smooth L1")
    b.axvline(beta, color="0.6", ls=":", lw=1)
    b.set(xlabel="|x| (regression error)", ylabel="∂loss/∂|x|", title=f"gradient (jump at |x| = β: {jump:+.3f})")
    for ax in (a, b):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def balanced_l1_explorer(alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0):
    """Sliders for alpha, gamma and beta over :func:`draw_balanced_l1`."""
    import ipywidgets as w

    controls = {
        "alpha": w.FloatSlider(value=alpha, min=0.05, max=2.0, step=0.05, description="α"),
        "gamma": w.FloatSlider(value=gamma, min=0.2, max=3.0, step=0.1, description="γ"),
        "beta": w.FloatSlider(value=beta, min=0.2, max=2.0, step=0.05, description="β"),
    }
    return live_figure(draw_balanced_l1, controls)


def feature_energy(x: Tensor) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W)`` mean absolute activation, a channel-free picture of a feature map."""
    return x.detach().float().abs().mean(0).cpu().numpy()


def plot_bfp(image: Tensor, levels: Sequence[Tensor], integrated: Tensor, refined: Tensor, outs: Sequence[Tensor],
             level_names: Sequence[str] = ("P2", "P3", "P4", "P5", "P6")) -> Figure:
    """Row 1: the image, the integrated feature (Eq. 2) and the refined one. Row 2: the residual each level
    receives (``out - in``). Row 3: each level before balancing. All maps show mean ``|activation|`` over channels
    for the first image of the batch."""
    n = len(levels)
    fig, axes = plt.subplots(3, n, figsize=(3 * n, 8.4))
    axes[0, 0].imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
    axes[0, 0].set_title("image")
    for ax, m, t in ((axes[0, 1], integrated, "integrated C (Eq. 2)"), (axes[0, 2], refined, "refined (non-local)")):
        im = ax.imshow(feature_energy(m[0]), cmap="magma")
        ax.set_title(t)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes[0, 3:]:
        ax.axis("off")
    for i in range(n):
        im = axes[1, i].imshow(feature_energy(outs[i][0] - levels[i][0]), cmap="magma")
        axes[1, i].set_title(f"residual added to {level_names[i]}")
        fig.colorbar(im, ax=axes[1, i], fraction=0.046)
        im = axes[2, i].imshow(feature_energy(levels[i][0]), cmap="viridis")
        axes[2, i].set_title(f"{level_names[i]} before ({tuple(levels[i].shape[-2:])})")
        fig.colorbar(im, ax=axes[2, i], fraction=0.046)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Balanced Feature Pyramid: mean |activation| over channels (feature cells)")
    fig.tight_layout()
    return fig
