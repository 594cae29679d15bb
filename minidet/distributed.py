"""The few reductions over ``torch.distributed`` processes that losses need: below losses, assigners and
models, so none of them imports the training engine (:mod:`minidet.engine.distributed` starts and ends
process groups and re-exports these).

Every loss normaliser (number of positives, centerness sum, Dual Weighting's normalisers, UMOP's per-level
counts, PFL's per-level statistics) is pooled over the processes first, so that the gradient DDP averages
equals the gradient of one process holding the whole batch (tested with two CPU processes,
``tests/test_engine_distributed.py``). All helpers are no-ops in a single process.
"""
from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean of ``x`` over processes (e.g. the number of positives that normalises a loss), without
    gradient. Returns ``x`` unchanged when not distributed."""
    if not is_dist():
        return x
    return all_reduce_sum(x) / dist.get_world_size()


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over processes, without gradient (e.g. per-level sums and counts that must be pooled
    before a statistic is taken). Returns ``x`` unchanged when not distributed."""
    if not is_dist():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def loss_normalizer(count: Tensor, min_total: float = 1.0) -> Tensor:
    """The divisor of a loss summed over this process's share of the batch:

    .. math:: Z = \\frac{\\max(m, \\sum_p n_p)}{P}

    for counts ``n_p`` (e.g. positives) on ``P`` processes and a floor ``m`` (1) against empty batches.
    DDP averages the gradients of ``S_p / Z`` over processes, which gives the gradient of
    ``sum_p S_p / max(m, sum_p n_p)``: one process with the whole batch. (Clamping the mean instead,
    ``max(m, mean_p n_p)``, as mmdetection does, differs whenever the total is below ``m P``, e.g. on a
    pyramid level without positives.) Any shape (e.g. ``(L,)`` per-level counts); without gradient
    under DDP; in one process, ``max(m, n)``."""
    return all_reduce_mean(count).clamp(min=min_total / world_size())
