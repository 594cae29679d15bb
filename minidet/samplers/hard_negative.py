"""Hard negative mining (SSD, Liu et al., ECCV 2016, Sec. 2.2 "Hard negative mining"; used by RefineDet and
MimicDet's S-head): of an image's negatives, only those with the highest loss count, at most ``ratio``
times the image's positives. Batched: one sort per batch, no loop over images."""
from __future__ import annotations

import torch
from torch import Tensor

from minidet.samplers.ranking import as_quota


def hard_negative_mask(loss: Tensor, neg: Tensor, num: int | Tensor) -> Tensor:
    """The ``num`` negatives of each row with the largest ``loss``.

    Args:
        loss: ``(B, N)`` per-element loss (detached; e.g. the cross-entropy against background).
        neg: ``(B, N)`` bool candidates.
        num: negatives to keep per image, an int or ``(B,)``.

    Returns:
        ``(B, N)`` bool: ``min(num[b], negatives of b)`` hardest negatives of each row (ties broken by index).
    """
    quota = as_quota(num, neg.shape[0], neg.device)
    key = loss.detach().float().masked_fill(~neg, float("-inf"))
    order = key.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(neg.shape[1], device=neg.device).expand_as(order))
    return neg & (rank < quota[:, None])
