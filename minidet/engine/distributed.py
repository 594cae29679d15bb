"""The few torch.distributed helpers the losses need; all are no-ops in a single process."""
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


def barrier() -> None:
    if is_dist():
        dist.barrier()
