"""Per-pyramid-level bookkeeping of dense losses.

Dense heads concatenate the anchors (or points) of all levels along one axis. These helpers give
each element its level and sum any per-element quantity per level, so every detector can report
its loss components level by level (the raw material of the level-imbalance lessons).
"""
from __future__ import annotations

import torch
from torch import Tensor


def level_index(level_sizes: list[int], device: torch.device | str | None = None) -> Tensor:
    """``(A,)`` int64 giving the pyramid level of each of the ``A = sum(level_sizes)`` elements."""
    return torch.repeat_interleave(
        torch.arange(len(level_sizes), device=device), torch.tensor(level_sizes, device=device)
    )


def sum_per_level(values: Tensor, levels: Tensor, num_levels: int) -> Tensor:
    """Sum ``values`` over images and elements of each level.

    Args:
        values: ``(B, A)`` or ``(B, A, K)`` per-element quantity (e.g. focal loss summed over classes).
        levels: ``(A,)`` level of each element, from :func:`level_index`.
        num_levels: ``L``.

    Returns:
        ``(L,)`` sums, in ``values``' dtype, on its device; no host synchronisation.
    """
    per_elem = values.reshape(values.shape[0], values.shape[1], -1).sum(dim=(0, 2))  # (A,)
    return torch.zeros(num_levels, dtype=per_elem.dtype, device=per_elem.device).index_add_(0, levels, per_elem)
