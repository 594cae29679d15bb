"""Level imbalance (Wu et al. 2021, "UMOP", Fig. 2): how a per-level statistic, by default the fraction of
positive samples on each pyramid level, is distributed over the iterations of a training run."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from minidet.engine.history import History
from minidet.viz.training import KEY_LABELS, LEVEL_NAMES, _axes, history_rows, series


def level_values(history_rows_or_values: History | Sequence[dict[str, Any]] | np.ndarray, key: str) -> np.ndarray:
    """``(T, L)`` values of the per-level entry ``key``: from a :class:`History`, its rows (rows without
    ``key`` are skipped), or an array-like ``(T, L)`` passed through."""
    src = history_rows_or_values
    if isinstance(src, History) or (isinstance(src, Sequence) and len(src) and isinstance(src[0], dict)):
        values = series(history_rows(src), key)[1]
    else:
        values = np.asarray(src, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected (iterations, levels) values for {key!r}, got shape {values.shape}")
    return values


def plot_level_imbalance(
    history_rows_or_values: History | Sequence[dict[str, Any]] | np.ndarray,
    key: str = "levels/pos_fraction",
    level_names: Sequence[str] = LEVEL_NAMES,
    ax: Axes | None = None,
    log: bool = False,
) -> Axes:
    """UMOP's Fig. 2: one box plot per pyramid level of the per-iteration values of ``key``, with the
    per-level means joined by a dotted line.

    Each box spans the quartiles of the level's values over the iterations, whiskers reach 1.5 IQR and
    the points beyond are drawn as fliers. With the default key the y axis is the fraction of a level's
    anchors (or points) that are positive in one batch: the gap between levels is the level imbalance
    that UMOP's level-wise resampling and Progressive Focal Loss address.

    Args:
        history_rows_or_values: a :class:`History`, its rows (``history.json``), or a ``(T, L)`` array.
        key: a per-level history entry (``levels/pos_fraction``, ``levels/num_pos``, ``levels/pfl_gamma`` ...).
        level_names: tick labels (``P3`` ... ``P7``); extra levels are named ``level i``.
        ax: where to draw (a new figure when ``None``).
        log: logarithmic y axis (zero values, e.g. iterations without positives, are then not drawn).

    Returns:
        The ``Axes``.
    """
    values = level_values(history_rows_or_values, key)  # (T, L)
    num_levels = values.shape[1]
    names = (list(level_names) + [f"level {i}" for i in range(len(level_names), num_levels)])[:num_levels]
    ax = _axes(ax, (6, 4))
    x = np.arange(1, num_levels + 1)
    ax.boxplot([values[:, i] for i in range(num_levels)], positions=x, widths=0.5)
    ax.plot(x, values.mean(axis=0), ":o", color="tab:red", label="mean over iterations")
    if log:
        ax.set_yscale("log")
    ax.set_xticks(x, names)
    ax.set_xlabel("pyramid level")
    ax.set_ylabel(KEY_LABELS.get(key, key))
    ax.set_title(f"{key} per level over {len(values)} iterations")
    ax.legend()
    return ax
