"""Per-iteration training history, gathered without a host synchronisation on every step.

Each step hands its detached loss tensors to :meth:`History.record`; they stay on the device until
:meth:`History.flush` (called every ``log_interval`` steps) copies the whole window to the host in one
transfer. The result is a list of plain dicts, one per iteration, ready for ``json`` and matplotlib.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class History:
    """Rows ``{"iter": i, "lr": ..., "loss": ..., "loss_cls": ..., "levels/loss_cls": [..], ...}``."""

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows: list[dict[str, Any]] = list(rows or [])
        self._pending: list[tuple[int, float, dict[str, Tensor]]] = []

    def record(self, it: int, lr: float, values: dict[str, Tensor]) -> None:
        self._pending.append((it, lr, {k: v.detach() for k, v in values.items()}))

    def flush(self) -> list[dict[str, Any]]:
        """Move pending rows to the host (one copy per key for the window); return the new rows."""
        if not self._pending:
            return []
        keys = list(self._pending[0][2])
        host = {k: torch.stack([p[2][k].float() for p in self._pending]).cpu() for k in keys}
        new = []
        for j, (it, lr, _) in enumerate(self._pending):
            row: dict[str, Any] = {"iter": it, "lr": lr}
            for k in keys:
                v = host[k][j]
                row[k] = v.item() if v.dim() == 0 else v.tolist()
            new.append(row)
        self.rows.extend(new)
        self._pending.clear()
        return new

    def series(self, key: str) -> list:
        """All values of ``key`` in iteration order (flushes first)."""
        self.flush()
        return [r[key] for r in self.rows if key in r]

    def smoothed(self, key: str, window: int = 20) -> list[float]:
        """Running mean of a scalar series over ``window`` iterations, for readable plots."""
        xs = self.series(key)
        out, acc = [], 0.0
        for i, x in enumerate(xs):
            acc += x
            if i >= window:
                acc -= xs[i - window]
            out.append(acc / min(i + 1, window))
        return out

    def __len__(self) -> int:
        return len(self.rows) + len(self._pending)

