"""Random draws without replacement, batched: the building block of every sampler.

A sampler picks, per image, a given number of elements (anchors, RoIs) from a candidate set, sometimes
group by group (IoU bins, ground truths). Instead of a Python loop over images and groups, each candidate
gets a uniform random key; sorting by ``group + key`` orders every group's members randomly, and an
element is drawn when its rank inside its group is below the group's quota. The result is a boolean
mask of the same shape as the input, with no data-dependent shapes (no host synchronisation on CUDA).
"""
from __future__ import annotations

import torch
from torch import Tensor


def uniform_keys(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """float64 uniforms in [0, 1), drawn on ``generator``'s device (CPU by default) and moved to ``device``,
    so one seeded CPU generator gives the same draw on any device."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=gen_device).to(device)


def rank_in_groups(groups: Tensor, member: Tensor, num_groups: int, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random order of the members of every group, row by row.

    Args:
        groups: ``(B, N)`` int64 group of each element, in ``[0, num_groups)`` where ``member``.
        member: ``(B, N)`` bool, the elements that take part.
        num_groups: ``K``.

    Returns:
        ``(B, N)`` int64 rank of each member inside its group (``0 .. size - 1``, a random permutation);
        non-members get ``N`` (larger than any rank).
    """
    bsz, n = member.shape
    g = groups.clamp(0, num_groups - 1).where(member, torch.zeros_like(groups))
    key = (g.double() + uniform_keys((bsz, n), member.device, generator)).masked_fill(~member, float("inf"))
    order = key.argsort(dim=1)
    position = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=member.device).expand(bsz, n))
    counts = torch.zeros(bsz, num_groups, dtype=torch.long, device=member.device).scatter_add_(1, g, member.long())
    starts = counts.cumsum(1) - counts  # (B, K) first position of each group in the sorted order
    rank = position - starts.gather(1, g)
    return rank.masked_fill(~member, n)


def take_random(member: Tensor, quota: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``min(quota[b], members)`` elements of ``member[b]`` uniformly without replacement.

    Args:
        member: ``(B, N)`` bool candidates; ``quota``: ``(B,)`` int64 (negative counts as 0).

    Returns:
        ``(B, N)`` bool mask of the drawn elements (a subset of ``member``).
    """
    rank = rank_in_groups(torch.zeros_like(member, dtype=torch.long), member, 1, generator)
    return member & (rank < quota[:, None])


def as_quota(num: int | Tensor, bsz: int, device: torch.device) -> Tensor:
    """``num`` (an int or ``(B,)`` tensor) as a ``(B,)`` int64 tensor."""
    if isinstance(num, Tensor):
        return num.to(device=device, dtype=torch.long).expand(bsz)
    return torch.full((bsz,), int(num), dtype=torch.long, device=device)
