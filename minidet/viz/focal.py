"""Pictures of focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

https://arxiv.org/abs/1708.02002

Every number drawn here comes from :func:`minidet.losses.sigmoid_focal_loss` and autograd: the plots
show the loss the detector trains with, not a second transcription of Eq. (5).
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from minidet.losses.focal import cross_entropy_loss, sigmoid_focal_loss


def _loss_and_grad(fn, p: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray]:
    """``fn(logits, targets)`` elementwise at ``p = sigmoid(x)``, and ``d fn / d x`` by autograd."""
    x = torch.logit(torch.as_tensor(p, dtype=torch.float64)).requires_grad_(True)
    loss = fn(x, torch.full_like(x, target))
    (grad,) = torch.autograd.grad(loss.sum(), x)  # elements are independent: grad of the sum = elementwise grad
    return loss.detach().cpu().numpy(), grad.cpu().numpy()


def focal_curves(p: np.ndarray | Sequence[float], gamma: float = 2.0, alpha: float | None = 0.25) -> dict[str, np.ndarray]:
    """Focal loss and cross-entropy, and their gradients with respect to the logit, as functions of ``p``.

    ``p = sigmoid(x)`` is the predicted probability of the class. For a positive (``y = 1``)
    ``p_t = p``; for a negative (``y = 0``) ``p_t = 1 - p``. The loss is Eq. (5),
    :math:`\\mathrm{FL}(p_t) = -\\alpha_t (1 - p_t)^\\gamma \\log p_t`, evaluated by
    :func:`minidet.losses.sigmoid_focal_loss`; gradients ``dL/dx`` come from autograd.

    Args:
        p: probabilities in ``(0, 1)``, any shape (float64 is used internally).
        gamma: focusing parameter ``>= 0`` (``0`` gives (alpha-weighted) cross-entropy).
        alpha: weight of positives in ``[0, 1]``; ``None`` or negative disables the weighting.

    Returns:
        numpy arrays shaped like ``p``: ``p``, ``loss_pos``, ``loss_neg``, ``grad_pos``, ``grad_neg``
        (focal loss) and ``ce_pos``, ``ce_neg``, ``ce_grad_pos``, ``ce_grad_neg`` (plain, unweighted
        binary cross-entropy). Losses are in nats; gradients in nats per unit logit.
    """
    p = np.asarray(p, dtype=np.float64)
    if np.any((p <= 0) | (p >= 1)):
        raise ValueError(f"p must lie strictly between 0 and 1, got values in [{p.min()}, {p.max()}]")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    a = -1.0 if alpha is None else float(alpha)

    def focal(x, y):
        return sigmoid_focal_loss(x, y, alpha=a, gamma=float(gamma))

    out = {"p": p}
    for name, y in (("pos", 1.0), ("neg", 0.0)):
        out[f"loss_{name}"], out[f"grad_{name}"] = _loss_and_grad(focal, p, y)
        out[f"ce_{name}"], out[f"ce_grad_{name}"] = _loss_and_grad(cross_entropy_loss, p, y)
    return out


def plot_focal_loss(gammas: Sequence[float] = (0, 0.5, 1, 2, 5), alpha: float | None = None, ax: Axes | None = None) -> Axes:
    """Fig. 1 of the paper: loss versus the probability of the ground-truth class ``p_t``, one curve per gamma.

    ``gamma = 0`` is cross-entropy. The paper's figure has no alpha weighting, which is the default
    here (``alpha=None``); with ``alpha`` set, the curves are those of a positive, scaled by ``alpha``.
    The shaded band ``p_t > 0.6`` marks the "well-classified examples" the paper points at.

    Returns:
        The axes (loss in nats on y, ``p_t`` on x).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    p_t = np.linspace(0.001, 0.999, 400)
    for g in gammas:
        c = focal_curves(p_t, g, alpha)
        ax.plot(p_t, c["loss_pos"], lw=2 if g == 0 else 1.5, label=f"$\\gamma = {g:g}$" + (" (CE)" if g == 0 else ""))
    ax.axvspan(0.6, 1.0, color="0.9", zorder=0)
    ax.text(0.8, 0.92, "well-classified\nexamples", transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5 * (1 if alpha is None or alpha < 0 else alpha))
    ax.set_xlabel("probability of ground-truth class $p_t$")
    ax.set_ylabel("loss (nats)")
    weight = "no $\\alpha$ weighting" if alpha is None or alpha < 0 else f"$\\alpha = {alpha:g}$"
    ax.set_title(f"Focal loss vs. $p_t$ ({weight}), Lin et al. Fig. 1")
    ax.legend()
    return ax


def draw_focal_explorer(gamma: float, alpha: float | None, figsize: tuple[float, float] = (11, 4)) -> Figure:
    """Two panels for one setting: loss (left) and ``dL/dx`` (right) versus ``p``, for a positive and
    a negative anchor, focal loss (solid) beside cross-entropy (dashed)."""
    p = np.linspace(0.001, 0.999, 400)
    c = focal_curves(p, gamma, alpha)
    fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=figsize)
    for name, color, label in (("pos", "tab:blue", "positive (y=1)"), ("neg", "tab:red", "negative (y=0)")):
        ax_loss.plot(p, c[f"loss_{name}"], color=color, lw=2, label=f"focal, {label}")
        ax_loss.plot(p, c[f"ce_{name}"], color=color, ls="--", lw=1, label=f"CE, {label}")
        ax_grad.plot(p, c[f"grad_{name}"], color=color, lw=2, label=f"focal, {label}")
        ax_grad.plot(p, c[f"ce_grad_{name}"], color=color, ls="--", lw=1, label=f"CE, {label}")
    ax_loss.set_ylim(0, 5)
    ax_loss.set_title("Loss")
    ax_loss.set_ylabel("loss (nats)")
    ax_grad.axhline(0, color="0.5", lw=0.5)
    ax_grad.set_ylim(-1.05, 1.05)
    ax_grad.set_title("Gradient w.r.t. the logit $x$")
    ax_grad.set_ylabel("$\\partial L / \\partial x$ (nats per logit unit)")
    for ax in (ax_loss, ax_grad):
        ax.set_xlim(0, 1)
        ax.set_xlabel("predicted probability of the class $p = \\sigma(x)$")
        ax.legend(fontsize=8)
    weight = "off" if alpha is None or alpha < 0 else f"{alpha:.2f}"
    fig.suptitle(f"Focal loss with $\\gamma$ = {gamma:.2f}, $\\alpha$ = {weight}")
    fig.tight_layout()
    return fig


def focal_loss_explorer(gamma: float = 2.0, alpha: float = 0.25):
    """An ipywidgets explorer of focal loss: sliders for gamma (0-5) and alpha (0-1), a checkbox that
    turns alpha weighting off, and the two panels of :func:`draw_focal_explorer`, redrawn on every change.

    A static copy of the initial figure is displayed as an ordinary cell output first (see
    :func:`minidet.viz.widgets.live_figure`), so the saved notebook and a static book show a plot without
    widget JavaScript. Call it as the last line of a cell so that the returned widget is displayed below.

    Returns:
        An ``ipywidgets.VBox`` with attributes ``gamma_slider``, ``alpha_slider``, ``alpha_enabled``,
        ``output`` (the ``ipywidgets.Output`` holding the live figure), ``redraw()`` and ``redraws``
        (how many figures have been drawn into ``output``).
    """
    import ipywidgets as widgets

    from minidet.viz.widgets import live_figure

    controls = {
        "gamma": widgets.FloatSlider(value=gamma, min=0.0, max=5.0, step=0.1, description="gamma", continuous_update=False),
        "alpha": widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="alpha", continuous_update=False),
        "alpha_on": widgets.Checkbox(value=True, description="alpha weighting"),
    }

    def draw(gamma: float, alpha: float, alpha_on: bool) -> Figure:
        controls["alpha"].disabled = not alpha_on
        return draw_focal_explorer(gamma, alpha if alpha_on else None)

    box = live_figure(draw, controls, "static snapshot of the initial setting")
    box.gamma_slider, box.alpha_slider, box.alpha_enabled = controls["gamma"], controls["alpha"], controls["alpha_on"]
    return box
