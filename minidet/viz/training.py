"""Training curves from a :class:`minidet.engine.History`: total, classification and box loss,
their per-pyramid-level parts, the learning rate, and positive/negative anchor counts per level.

Every function takes the history's rows (``history.rows``, the content of ``history.json``) or the
:class:`~minidet.engine.History` itself, and draws on ``ax`` (a new figure when ``None``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from minidet.engine.history import History

LEVEL_NAMES = ("P3", "P4", "P5", "P6", "P7")

# What each logged key measures, for axis labels. RetinaNet divides every loss by the number of
# positive anchors in the batch (Sec. 3.3), so losses are "per positive anchor".
KEY_LABELS = {
    "loss": "total loss (per positive anchor)",
    "loss_cls": "classification loss (per positive anchor)",
    "loss_box": "box loss (per positive anchor)",
    "levels/loss_cls": "classification loss (per positive anchor)",
    "levels/loss_box": "box loss (per positive anchor)",
    "levels/num_pos": "positive anchors per batch",
    "levels/num_neg": "negative anchors per batch",
    "levels/pos_fraction": "fraction of anchors that are positive",
}


def history_rows(history: History | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a :class:`History` (flushed first) or a list of rows as is."""
    if isinstance(history, History):
        history.flush()
        return history.rows
    return list(history)


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps along axis 0 (shorter at the start); ``(T, ...)`` -> ``(T, ...)``."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) == 0:
        return values
    csum = np.cumsum(values, axis=0)
    out = csum.copy()
    out[window:] = csum[window:] - csum[:-window]
    counts = np.minimum(np.arange(1, len(values) + 1), window).reshape((-1,) + (1,) * (values.ndim - 1))
    return out / counts


def series(rows: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(iterations (T,), values (T,) or (T, L))`` of the rows that log ``key``."""
    kept = [r for r in rows if key in r]
    if not kept:
        known = sorted(rows[0]) if rows else []
        raise KeyError(f"no history row has {key!r}; logged keys: {known}")
    return np.array([r["iter"] for r in kept]), np.array([r[key] for r in kept], dtype=np.float64)


def _axes(ax: Axes | None, figsize: tuple[float, float] = (7, 4)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_loss_components(history: History | Sequence[dict[str, Any]], ax: Axes | None = None, smooth: int = 20,
                         keys: Sequence[str] = ("loss", "loss_cls", "loss_box"), log: bool = False) -> Axes:
    """Total, classification and box loss versus iteration.

    Raw per-iteration values are drawn faint, their ``smooth``-iteration running mean solid. Losses are
    unitless (nats for the focal term), summed over anchors and divided by the number of positives.

    Args:
        history: :class:`History` or its rows.
        smooth: running-mean window in iterations (1: no smoothing).
        keys: which scalar losses to draw (those missing from the history are skipped).
        log: logarithmic y axis.
    """
    rows = history_rows(history)
    ax = _axes(ax)
    for key in keys:
        if not any(key in r for r in rows):
            continue
        it, v = series(rows, key)
        line, = ax.plot(it, running_mean(v, smooth), lw=2, label=f"{key} (mean of {smooth})" if smooth > 1 else key)
        if smooth > 1:
            ax.plot(it, v, color=line.get_color(), alpha=0.25, lw=0.8)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (per positive anchor)")
    ax.set_title("Training loss and its components")
    ax.legend()
    return ax


def plot_level_losses(history: History | Sequence[dict[str, Any]], key: str = "levels/loss_cls",
                      level_names: Sequence[str] = LEVEL_NAMES, smooth: int = 20, ax: Axes | None = None,
                      log: bool = False) -> Axes:
    """One line per pyramid level of a per-level entry of the loss dict, versus iteration.

    ``key`` is one of the ``levels/...`` entries RetinaNet logs: ``loss_cls`` and ``loss_box`` (each
    level's part of the loss; the parts add up to ``loss_cls`` / ``loss_box``), ``num_pos`` and
    ``num_neg`` (anchors per batch), ``pos_fraction``. Lines are ``smooth``-iteration running means.
    """
    rows = history_rows(history)
    it, v = series(rows, key)  # (T,), (T, L)
    if v.ndim != 2:
        raise ValueError(f"{key!r} is not a per-level entry (values of shape {v.shape[1:]})")
    names = list(level_names) + [f"level {i}" for i in range(len(level_names), v.shape[1])]
    ax = _axes(ax)
    for lvl in range(v.shape[1]):
        ax.plot(it, running_mean(v[:, lvl], smooth), lw=1.8, label=names[lvl])
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel(KEY_LABELS.get(key, key))
    ax.set_title(f"{key} per pyramid level" + (f" (running mean of {smooth})" if smooth > 1 else ""))
    ax.legend(title="level")
    return ax


def plot_lr(history: History | Sequence[dict[str, Any]], ax: Axes | None = None) -> Axes:
    """Learning rate versus iteration (warm-up, then the decay of the schedule)."""
    it, lr = series(history_rows(history), "lr")
    ax = _axes(ax, (6, 3))
    ax.plot(it, lr)
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning-rate schedule")
    return ax


def plot_pos_neg_per_level(num_pos: Sequence[float], num_neg: Sequence[float], level_names: Sequence[str] = LEVEL_NAMES,
                           ax: Axes | None = None) -> Axes:
    """Bars of positive and negative anchors per pyramid level, on a log axis (the imbalance spans orders
    of magnitude). Inputs are the ``levels/num_pos`` and ``levels/num_neg`` entries of one loss dict."""
    pos, neg = np.asarray(num_pos, dtype=np.float64), np.asarray(num_neg, dtype=np.float64)
    names = list(level_names)[: len(pos)]
    ax = _axes(ax, (6, 4))
    x = np.arange(len(pos))
    ax.bar(x - 0.2, np.maximum(pos, 0.5), width=0.4, label="positive", color="tab:blue")
    ax.bar(x + 0.2, np.maximum(neg, 0.5), width=0.4, label="negative", color="tab:red")
    for xi, p in zip(x, pos):
        ax.text(xi - 0.2, max(p, 0.5), f"{p:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(x, names)
    ax.set_xlabel("pyramid level")
    ax.set_ylabel("anchors in the batch (log scale)")
    ax.set_title("Positive vs. negative anchors per level")
    ax.legend()
    return ax


def plot_zoo_curves(results: dict[str, list[dict]], ax=None, title: str | None = None):
    """AP (%) against training iteration for every zoo model: the mean over seeds at each snapshot (line),
    the seeds' range (band) and each seed (dots). ``results``: :func:`minidet.engine.zoo.load_results`.
    One cosine schedule per run, so a snapshot is not the end of a shorter schedule."""
    ax = ax or plt.subplots(figsize=(7.5, 4.5))[1]
    for j, (model, recs) in enumerate(results.items()):
        its = sorted({c["iter"] for r in recs for c in r["curve"]})
        per_seed = [[next((100 * c["AP"] for c in r["curve"] if c["iter"] == i), np.nan) for i in its] for r in recs]
        aps = np.array(per_seed)  # (seeds, snapshots)
        ax.plot(its, np.nanmean(aps, 0), "-", color=f"C{j}", label=f"{model} ({len(recs)} seed{'s' * (len(recs) > 1)})")
        if len(recs) > 1:
            ax.fill_between(its, np.nanmin(aps, 0), np.nanmax(aps, 0), color=f"C{j}", alpha=0.2, lw=0)
        for row in aps:
            ax.plot(its, row, ".", color=f"C{j}", ms=4)
    ax.set_xlabel("training iteration (snapshot of one cosine schedule)")
    ax.set_ylabel("COCO AP (%)")
    ax.set_title(title or "Zoo: AP at the snapshots of the default recipe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
