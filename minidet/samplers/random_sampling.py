"""Random sampling of positives and negatives (Faster R-CNN, Sec. 3.1.3 "Training RPNs"): each image
contributes a fixed number of samples, at most a fraction of them positive, the rest negative."""
from __future__ import annotations

import torch
from torch import Tensor

from minidet.samplers.ranking import as_quota, take_random


def random_sample(member: Tensor, num: int | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw up to ``num`` elements of each row of ``member`` uniformly without replacement.

    ``member``: ``(B, N)`` bool; ``num``: int or ``(B,)``. Returns a ``(B, N)`` bool mask."""
    return take_random(member, as_quota(num, member.shape[0], member.device), generator)


def sample_pos_neg(pos: Tensor, neg: Tensor, num: int, pos_fraction: float, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """The standard split: ``round(num * pos_fraction)`` positives at most, negatives fill the rest.

    Args:
        pos, neg: ``(B, N)`` bool candidates.
        num: samples per image (RPN: 256, R-CNN: 512); ``pos_fraction``: 0.5 (RPN) or 0.25 (R-CNN).

    Returns:
        ``(sampled_pos, num_neg_expected, pos_quota)``: the ``(B, N)`` positives drawn, the ``(B,)`` number
        of negatives each image should now take (``num`` minus its drawn positives), and the ``(B,)``
        positive quota. The negatives are drawn by the caller (at random or IoU-balanced).
    """
    bsz = pos.shape[0]
    pos_quota = as_quota(int(num * pos_fraction), bsz, pos.device)
    sampled_pos = take_random(pos, pos_quota, generator)
    return sampled_pos, num - sampled_pos.sum(1), pos_quota
