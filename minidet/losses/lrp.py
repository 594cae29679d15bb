"""Level-wise Resampling Paradigm (Wu et al. 2021, "UMOP", Eq. 1) versus the usual pooled normalisation.

https://arxiv.org/abs/2109.07217

A dense detector's classification loss is a sum over every anchor (or point) of every level. The usual
recipe (RetinaNet, Sec. 3.3) pools all levels and divides by the total number of positives, so a level
that owns most positives dominates the gradient. UMOP instead normalises each level by its own
positives and averages the levels, so that every level is one equally weighted sub-problem:

.. math::
    \\mathcal{L}_{cls} = \\frac{1}{L} \\sum_{l=1}^{L} \\frac{1}{\\max(1, N^{l}_{pos})}
    \\sum_{i \\in \\mathrm{level}\\ l} \\mathrm{FL}(p_i, y_i)  \\qquad \\text{(Eq. 1)}

.. math::
    \\mathcal{L}^{pooled}_{cls} = \\frac{1}{\\max(1, \\sum_l N^{l}_{pos})} \\sum_{l=1}^{L} \\sum_{i \\in \\mathrm{level}\\ l} \\mathrm{FL}(p_i, y_i)
"""
from __future__ import annotations

from torch import Tensor

from minidet.distributed import loss_normalizer


def normalize_level_losses(level_sums: Tensor, level_num_pos: Tensor, level_resampling: bool = False) -> Tensor:
    """Per-level parts of the normalised classification loss; they sum to the total.

    Args:
        level_sums: ``(L,)`` loss summed over the images, elements and classes of each level.
        level_num_pos: ``(L,)`` positives of each level in this process's batch (float).
        level_resampling: ``True``: Eq. (1), part ``l`` is ``level_sums[l] / max(1, N_l) / L``;
            ``False``: pooled, part ``l`` is ``level_sums[l] / max(1, sum_l N_l)``.

    Returns:
        ``(L,)`` parts. Positive counts are pooled over processes under ``torch.distributed``
        (:func:`~minidet.distributed.loss_normalizer`), so every process divides by the same numbers.
    """
    if level_resampling:
        return level_sums / loss_normalizer(level_num_pos) / level_sums.shape[0]
    return level_sums / loss_normalizer(level_num_pos.sum())
