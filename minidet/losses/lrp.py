"""Level-wise Resampling Paradigm (Wu et al. 2021, "UMOP", Eq. 1) and the normalisations it is read as.

https://arxiv.org/abs/2109.07217

A dense detector's classification loss is a sum over every anchor (or point) of every level. The usual
recipe (RetinaNet, Sec. 3.3) pools all levels and divides by the total number of positives, so a level
that owns most positives dominates the gradient. UMOP's Eq. 1 writes the classification loss as the
mean of per-level losses,

.. math::
    \\mathcal{L}_{cls} = \\frac{1}{L} \\sum_{l=1}^{L} \\mathrm{Loss}_l(P_l, Y_l)  \\qquad \\text{(Eq. 1)}

and does not say how each :math:`\\mathrm{Loss}_l` is normalised. Three readings, chosen by ``form``:

* ``"pooled"`` (the usual recipe, and the default):

  .. math:: \\mathcal{L}^{pooled}_{cls} = \\frac{1}{\\max(1, \\sum_l N^{l}_{pos})} \\sum_{l} \\sum_{i \\in l} \\mathrm{FL}(p_i, y_i)

* ``"own_positives"``, *an interpretation of Eq. 1 by minidet*, not the paper's text: each level is
  normalised by its own positives and the levels are averaged, so every level weighs the same,

  .. math:: \\mathcal{L}^{own}_{cls} = \\frac{1}{L} \\sum_{l} \\frac{1}{\\max(1, N^{l}_{pos})} \\sum_{i \\in l} \\mathrm{FL}(p_i, y_i)

* ``"code"``, the authors' released code (``zimoqingfeng/UMOP``: ``LRPHead`` inherits ``ATSSHead.loss``,
  which passes the total number of positives as every level's ``avg_factor`` and returns the list of level
  losses, which mmdetection sums): each level divided by the *total* positives, summed without
  :math:`1/L`. That is, number for number, the pooled loss: the released code's level-wise resampling
  changes no normalisation, so whatever it gains over the baseline comes from elsewhere (in that code,
  the per-level PFL statistics of :mod:`minidet.losses.pfl`).

``level_resampling=False`` and ``True``, the booleans minidet used before these names, stay aliases of
``"pooled"`` and ``"own_positives"`` (:func:`lrp_form`).
"""
from __future__ import annotations

from torch import Tensor

from minidet.distributed import loss_normalizer

LRP_FORMS = ("pooled", "own_positives", "code")


def lrp_form(level_resampling: bool | str) -> str:
    """The name of a level normalisation: one of :data:`LRP_FORMS`, or a boolean alias (``False`` ->
    ``"pooled"``, ``True`` -> ``"own_positives"``, minidet's earlier switch). Raises ``ValueError`` otherwise."""
    if isinstance(level_resampling, bool):
        return "own_positives" if level_resampling else "pooled"
    if level_resampling not in LRP_FORMS:
        raise ValueError(f"level_resampling must be a bool or one of {LRP_FORMS}, got {level_resampling!r}")
    return level_resampling


def normalize_level_losses(level_sums: Tensor, level_num_pos: Tensor, level_resampling: bool | str = "pooled") -> Tensor:
    """Per-level parts of the normalised classification loss; they sum to the total.

    Args:
        level_sums: ``(L,)`` loss summed over the images, elements and classes of each level.
        level_num_pos: ``(L,)`` positives of each level in this process's batch (float).
        level_resampling: the reading of Eq. 1 (see the module docstring and :func:`lrp_form`):
            ``"pooled"`` / ``False``: part ``l`` is ``level_sums[l] / max(1, sum_l N_l)``;
            ``"own_positives"`` / ``True`` (minidet's interpretation): ``level_sums[l] / max(1, N_l) / L``;
            ``"code"`` (the authors' code): ``level_sums[l] / max(1, sum_l N_l)``, the pooled parts.

    Returns:
        ``(L,)`` parts. Positive counts are pooled over processes under ``torch.distributed``
        (:func:`~minidet.distributed.loss_normalizer`), so every process divides by the same numbers.
    """
    if lrp_form(level_resampling) == "own_positives":
        return level_sums / loss_normalizer(level_num_pos) / level_sums.shape[0]
    # "pooled" and "code": the authors' per-level avg_factor is the batch's total positives
    return level_sums / loss_normalizer(level_num_pos.sum())
