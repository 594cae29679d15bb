"""Progressive Focal Loss (Wu et al., "Progressive Hard-case Mining across Pyramid Levels in Object
Detection", 2021, "UMOP"), Eq. (3)-(5).

https://arxiv.org/abs/2109.07217

Focal loss with one fixed ``(alpha, gamma)`` treats every pyramid level alike, although the levels
differ in how many positives they get and how well they already classify them (UMOP, Fig. 2). PFL
gives each level ``l`` its own focusing parameter, read off at every iteration from how confident the
detector is on that level's positives, and ties the balancing weight to it:

.. math::
    \\mathrm{PFL}(p_t) = -\\alpha^{l}_{ad} (1 - p_t)^{\\gamma^{l}_{ad}} \\log(p_t)  \\qquad \\text{(Eq. 3)}

.. math::
    \\gamma^{l}_{ad} = \\mathrm{clip}\\Big(-\\log\\big(\\tfrac{1}{n^{l}_{pos}} \\textstyle\\sum_{i \\in pos_l} p_i\\big),
    \\ \\gamma - \\delta,\\ \\gamma + \\delta\\Big)  \\qquad \\text{(Eq. 4)}

.. math::
    \\alpha^{l}_{ad} = \\frac{w}{\\gamma^{l}_{ad}}  \\qquad \\text{(Eq. 5)}

where :math:`p_i` is the predicted probability of the true class at positive ``i``. Early in training
the positives are poorly classified, ``-log(mean p)`` is large and the loss focuses hard; as the level
converges ``gamma_ad`` decreases towards ``gamma - delta``. The paper uses ``gamma = 2``,
``delta = 0.5``, ``w = 0.5`` (so ``alpha_ad = 0.25`` at ``gamma_ad = 2``, the RetinaNet setting).

Paper and code differ in Eq. (4): the authors' implementation averages ``-log p`` over the positives
(``variant="official"``) instead of taking ``-log`` of the mean probability (``variant="paper"``). As
``-log`` is convex, Jensen's inequality gives ``mean(-log p) >= -log(mean p)``: the official variant
never focuses less. Both are clipped the same way. The hyper-parameters are statistics, not functions
to differentiate: they are computed without gradient.

**Which positives the authors' code counts.** Their ``LRPHead.loss_single`` (``zimoqingfeng/UMOP``,
``mmdet/models/dense_heads/level_resampling_head.py``) averages ``-log p`` over the entries where it is
``> 0``, not over the positives: a positive whose probability rounds to 1.0 in float32 (``-log p = 0``)
drops out of the mean, and a level whose positives all do (or that has none) gets the constant 2, which
is ``gamma`` for the default ``gamma = 2`` and not the clamp's lower end ``gamma - delta``. minidet counts
every positive: such a positive adds 0 to ``mean(-log p)``, and a level whose positives all have
``p = 1`` gets ``gamma - delta`` after the clip. The two differ only on positives classified with
float32 certainty; a level without positives gets ``gamma`` here and 2 there (the same for the default
``gamma = 2``).

Under ``torch.distributed`` the statistic is pooled over processes before it is clipped, as in the
authors' code. They average each process's level mean (mmdetection's ``reduce_mean``, with a process
that has no positive on the level contributing the value 2); here the per-level sums and counts are
all-reduced instead, which is the mean over every positive of the global batch and agrees with theirs
whenever the processes hold equally many positives.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from minidet.distributed import all_reduce_sum
from minidet.losses.focal import sigmoid_focal_loss
from minidet.losses.focal_fused import fused_sigmoid_focal_loss, one_hot_to_labels

VARIANTS = ("paper", "official")


@torch.no_grad()
def pfl_hyperparams_per_level(
    pos_probs: Tensor,
    level_of_each: Tensor,
    num_levels: int,
    gamma: float = 2.0,
    delta: float = 0.5,
    w: float = 0.5,
    variant: str = "paper",
    weight: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``(gamma_ad, alpha_ad)`` of every pyramid level at once, Eq. (4)-(5) of UMOP.

    One ``index_add`` gathers the per-level sums and counts, so there is no loop over levels and no
    host synchronisation.

    Args:
        pos_probs: ``(N,)`` predicted probability of the true class at positive samples.
        level_of_each: ``(N,)`` int64 pyramid level of each sample, in ``[0, num_levels)``.
        num_levels: ``L``.
        gamma, delta: centre and half-width of the clipping range of ``gamma_ad``.
        w: numerator of ``alpha_ad = w / gamma_ad``.
        variant: ``"paper"``: ``-log(mean p)`` (Eq. 4); ``"official"``: ``mean(-log p)`` (authors' code).
        weight: optional ``(N,)`` 0/1 mask; lets callers pass every sample with ``weight = pos`` instead of
            indexing the positives out (which would synchronise with the device).

    Returns:
        ``gamma_ad`` ``(L,)`` and ``alpha_ad`` ``(L,)``, float32, without gradient. A level without
        positives gets ``gamma`` and ``w / gamma``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    p = pos_probs.detach().float().clamp(min=torch.finfo(torch.float32).tiny, max=1.0)
    stat = p if variant == "paper" else -torch.log(p)  # (N,) the quantity averaged per level
    wt = torch.ones_like(p) if weight is None else weight.detach().float()
    sums = torch.zeros(2, num_levels, device=p.device).index_add_(1, level_of_each, torch.stack([stat * wt, wt]))
    sums = all_reduce_sum(sums)  # pool every process's positives before the mean (and the clip)
    count = sums[1]
    mean = sums[0] / count.clamp(min=1.0)  # (L,)
    gamma_ad = -torch.log(mean) if variant == "paper" else mean  # Eq. (4), before clipping
    gamma_ad = torch.where(count > 0, gamma_ad.clamp(gamma - delta, gamma + delta), torch.full_like(mean, gamma))
    return gamma_ad, w / gamma_ad  # Eq. (5)


def pfl_hyperparams(pos_probs: Tensor, gamma: float = 2.0, delta: float = 0.5, w: float = 0.5,
                    variant: str = "paper") -> tuple[Tensor, Tensor]:
    """``(gamma_ad, alpha_ad)`` of ONE level from its positives' probabilities ``(N,)``, Eq. (4)-(5):
    the one-level case of :func:`pfl_hyperparams_per_level`. Returns two 0-d float32 tensors."""
    levels = torch.zeros(pos_probs.shape[0], dtype=torch.long, device=pos_probs.device)
    g, a = pfl_hyperparams_per_level(pos_probs, levels, 1, gamma, delta, w, variant)
    return g[0], a[0]


class ProgressiveFocalLoss(nn.Module):
    """Eq. (3) of UMOP: focal loss whose ``alpha`` and ``gamma`` are recomputed per level every call.

    Same interface as :class:`minidet.losses.FocalLoss`: ``forward(logits (B, A, C), targets (B, A, C),
    pos (B, A) bool, levels (A,), num_levels)`` returns the per-element loss ``(B, A, C)`` and, for the
    training history, ``levels/pfl_gamma`` and ``levels/pfl_alpha`` ``(L,)``.

    ``targets`` are one-hot at positives, so the true-class probability of a positive is
    ``sum_c sigmoid(logit_c) * target_c``.

    ``fused=True``: as :class:`minidet.losses.FocalLoss`, the loss summed over classes ``(B, A, 1)`` from
    :func:`~minidet.losses.fused_sigmoid_focal_loss`, fed with the per-level ``gamma_ad``/``alpha_ad``
    device tensors (no host synchronisation); the true-class probability is gathered, not summed.
    """

    def __init__(self, gamma: float = 2.0, delta: float = 0.5, w: float = 0.5, variant: str = "paper",
                 fused: bool = False) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if not 0 <= delta < gamma:
            raise ValueError(f"need 0 <= delta < gamma so gamma_ad stays positive, got gamma={gamma}, delta={delta}")
        self.gamma, self.delta, self.w, self.variant, self.fused = gamma, delta, w, variant, fused

    def forward(self, logits: Tensor, targets: Tensor, pos: Tensor, levels: Tensor, num_levels: int
                ) -> tuple[Tensor, dict[str, Tensor]]:
        if self.fused:
            labels = one_hot_to_labels(targets)  # (B, A), -1 for background
            probs = torch.sigmoid(logits.detach().gather(-1, labels.clamp(min=0)[..., None]))[..., 0]
        else:
            probs = (torch.sigmoid(logits.detach()) * targets).sum(-1)  # (B, A) true-class probability
        gamma_ad, alpha_ad = pfl_hyperparams_per_level(
            probs.reshape(-1), levels.expand_as(probs).reshape(-1), num_levels,
            self.gamma, self.delta, self.w, self.variant, weight=pos.reshape(-1),
        )
        if self.fused:
            loss = fused_sigmoid_focal_loss(logits, labels, gamma_ad, alpha_ad, levels)[..., None]  # (B, A, 1)
        else:
            g = gamma_ad[levels][None, :, None].to(logits.dtype)  # (1, A, 1), broadcast over images and classes
            a = alpha_ad[levels][None, :, None].to(logits.dtype)
            loss = sigmoid_focal_loss(logits, targets, a, g)
        return loss, {"levels/pfl_gamma": gamma_ad, "levels/pfl_alpha": alpha_ad}

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, delta={self.delta}, w={self.w}, variant={self.variant!r}" + (
            ", fused=True" if self.fused else "")
