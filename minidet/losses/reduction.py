"""The ``reduction=`` argument every elementwise loss in minidet takes."""
from __future__ import annotations

from torch import Tensor

REDUCTIONS = ("none", "sum", "mean")


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """``"none"``: ``loss`` unchanged; ``"sum"``, ``"mean"``: a scalar."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
