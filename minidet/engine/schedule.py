"""Learning-rate schedules: linear warm-up, then cosine or step decay (as a multiplier of the base lr)."""
from __future__ import annotations

import math


def lr_factor(it: int, total: int, warmup_iters: int = 500, warmup_factor: float = 0.001, schedule: str = "cosine",
              steps: tuple[float, ...] = (0.67, 0.89), gamma: float = 0.1, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at iteration ``it`` of ``total``.

    Warm-up (Goyal et al. 2017): linear from ``warmup_factor`` to 1 over ``warmup_iters``. Then
    ``"cosine"``: :math:`f = m + (1 - m)\\,\\tfrac12(1 + \\cos(\\pi t))` with ``t`` the fraction of
    training after warm-up and ``m = min_factor``; ``"step"``: multiplied by ``gamma`` at each fraction
    of ``total`` listed in ``steps`` (RetinaNet's 1x schedule: 8/12 and 11/12 of the epochs); ``"constant"``.
    """
    if it < warmup_iters:
        alpha = it / max(1, warmup_iters)
        warm = warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if schedule == "cosine":
        t = min(1.0, max(0.0, (it - warmup_iters) / max(1, total - warmup_iters)))
        decay = min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))
    elif schedule == "step":
        decay = gamma ** sum(it >= s * total for s in steps)
    elif schedule == "constant":
        decay = 1.0
    else:
        raise ValueError(f"schedule must be 'cosine', 'step' or 'constant', got {schedule!r}")
    return warm * decay
