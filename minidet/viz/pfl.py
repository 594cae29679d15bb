"""Pictures of Progressive Focal Loss (UMOP, Eq. 3-5) next to focal loss.

The adaptive ``gamma_ad`` and ``alpha_ad`` come from :func:`minidet.losses.pfl_hyperparams` and the
curves from :func:`minidet.viz.focal.focal_curves`, i.e. from the loss the detectors train with.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from minidet.losses.pfl import pfl_hyperparams
from minidet.viz.focal import focal_curves


def sample_positive_probs(mean_p: float, concentration: float = 4.0, n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Plausible probabilities of the true class at a level's positives: Beta with mean ``mean_p`` and
    the given concentration (``a + b``). Only the official variant depends on the spread."""
    rng = np.random.default_rng(seed)  # its own generator: drawing a picture must not move torch's global RNG
    samples = rng.beta(mean_p * concentration, (1 - mean_p) * concentration, size=n)
    return torch.from_numpy(samples).clamp(1e-6, 1 - 1e-6)


def gamma_ad_curve(means: np.ndarray, gamma: float, delta: float, w: float, variant: str, concentration: float = 4.0) -> np.ndarray:
    """``gamma_ad`` as a function of a level's mean positive probability (Eq. 4, clipped)."""
    return np.array([float(pfl_hyperparams(sample_positive_probs(m, concentration), gamma, delta, w, variant)[0]) for m in means])


def draw_pfl_explorer(gamma: float = 2.0, delta: float = 0.5, w: float = 0.5, mean_p: float = 0.3,
                      variant: str = "paper", figsize: tuple[float, float] = (13, 4)) -> Figure:
    """Three panels for one level: (1) ``gamma_ad`` versus the level's mean positive probability, paper
    and official variants, with the clipping interval shaded; (2) loss and (3) gradient versus ``p`` of
    focal loss (``gamma``, ``alpha = w / gamma``) and of PFL at this level (``gamma_ad``, ``alpha_ad``)."""
    probs = sample_positive_probs(mean_p)
    g_ad, a_ad = (float(v) for v in pfl_hyperparams(probs, gamma, delta, w, variant))
    fig, (ax_g, ax_l, ax_d) = plt.subplots(1, 3, figsize=figsize)
    means = np.linspace(0.02, 0.98, 49)
    for var, style in (("paper", "-"), ("official", "--")):
        ax_g.plot(means, gamma_ad_curve(means, gamma, delta, w, var), style, color="tab:purple", label=f"{var}")
    ax_g.axhspan(gamma - delta, gamma + delta, color="0.9", zorder=0, label="clip interval")
    ax_g.plot(means, -np.log(means), color="0.6", lw=0.8, label="$-\\log \\bar p$ (unclipped)")
    ax_g.axvline(mean_p, color="k", lw=0.8)
    ax_g.plot([mean_p], [g_ad], "ko")
    ax_g.set_ylim(0, gamma + delta + 1)
    ax_g.set_xlabel("mean probability of the true class at the level's positives $\\bar p$")
    ax_g.set_ylabel("$\\gamma_{ad}$")
    ax_g.set_title("Eq. 4: the level's focusing parameter")
    ax_g.legend(fontsize=8)
    p = np.linspace(0.001, 0.999, 300)
    fl, pfl = focal_curves(p, gamma, w / gamma), focal_curves(p, g_ad, a_ad)
    for name, color in (("pos", "tab:blue"), ("neg", "tab:red")):
        lab = "positive" if name == "pos" else "negative"
        ax_l.plot(p, fl[f"loss_{name}"], color=color, ls="--", lw=1, label=f"FL, {lab}")
        ax_l.plot(p, pfl[f"loss_{name}"], color=color, lw=2, label=f"PFL, {lab}")
        ax_d.plot(p, fl[f"grad_{name}"], color=color, ls="--", lw=1, label=f"FL, {lab}")
        ax_d.plot(p, pfl[f"grad_{name}"], color=color, lw=2, label=f"PFL, {lab}")
    ax_l.set_ylim(0, 1.5)
    ax_l.set_ylabel("loss (nats)")
    ax_l.set_title("Loss")
    ax_d.set_ylim(-0.4, 0.4)
    ax_d.axhline(0, color="0.5", lw=0.5)
    ax_d.set_ylabel("$\\partial L/\\partial x$ (nats per logit unit)")
    ax_d.set_title("Gradient w.r.t. the logit")
    for ax in (ax_l, ax_d):
        ax.set_xlabel("predicted probability of the class $p$")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
    fig.suptitle(f"{variant} PFL: $\\gamma_{{ad}}$ = {g_ad:.2f}, $\\alpha_{{ad}}$ = {a_ad:.3f}   "
                 f"(FL: $\\gamma$ = {gamma:.2f}, $\\alpha$ = {w / gamma:.3f})")
    fig.tight_layout()
    return fig


def pfl_explorer(gamma: float = 2.0, delta: float = 0.5, w: float = 0.5, mean_p: float = 0.3, variant: str = "paper"):
    """ipywidgets explorer of :func:`draw_pfl_explorer`: sliders for gamma, delta, w and the level's mean
    positive probability, and a paper/official toggle. Returns the widget (see :func:`minidet.viz.widgets.live_figure`)."""
    import ipywidgets as widgets

    from minidet.viz.widgets import live_figure

    def slider(value, lo, hi, step, name):
        return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=name, continuous_update=False)

    controls = {
        "gamma": slider(gamma, 0.5, 4.0, 0.1, "gamma"),
        "delta": slider(delta, 0.0, 1.5, 0.05, "delta"),
        "w": slider(w, 0.1, 1.0, 0.05, "w"),
        "mean_p": slider(mean_p, 0.02, 0.98, 0.02, "mean p"),
        "variant": widgets.ToggleButtons(options=["paper", "official"], value=variant, description="variant"),
    }
    return live_figure(draw_pfl_explorer, controls, "static snapshot at the default setting")
