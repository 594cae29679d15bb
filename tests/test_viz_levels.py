"""UMOP Fig. 2 (level-imbalance box plots) runs headless and draws the right numbers."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minidet.engine.history import History  # noqa: E402
from minidet.viz.levels import level_values, plot_level_imbalance  # noqa: E402

# three iterations, five levels: positives / anchors of each level
FRACTIONS = [[0.01, 0.02, 0.05, 0.10, 0.0], [0.03, 0.02, 0.07, 0.20, 0.5], [0.02, 0.05, 0.03, 0.30, 0.25]]


def test_means_and_boxes_from_history_rows():
    rows = [{"iter": i + 1, "lr": 0.1, "loss": 1.0, "levels/pos_fraction": f} for i, f in enumerate(FRACTIONS)]
    rows.insert(1, {"iter": 99, "lr": 0.1})  # a row without the key is skipped
    fig, ax = plt.subplots()
    out = plot_level_imbalance(rows, ax=ax)
    assert out is ax
    mean_line = ax.lines[-1]
    assert mean_line.get_linestyle() == ":"
    # per-level means by hand: P3 (0.01 + 0.03 + 0.02) / 3 = 0.02, ..., P7 (0 + 0.5 + 0.25) / 3 = 0.25
    np.testing.assert_allclose(mean_line.get_ydata(), [0.02, 0.03, 0.05, 0.20, 0.25])
    # boxplot draws 7 lines per box: the box, 2 whiskers, 2 caps, the median, the fliers
    medians = [line.get_ydata()[0] for line in ax.lines[:-1][5::7]]
    np.testing.assert_allclose(medians, [0.02, 0.02, 0.05, 0.20, 0.25])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["P3", "P4", "P5", "P6", "P7"]
    assert ax.get_yscale() == "linear" and ax.get_title() and ax.get_ylabel()
    plt.close(fig)


def test_array_input_log_axis_and_extra_level_names():
    values = np.array(FRACTIONS)[:, :4] + 0.01
    ax = plot_level_imbalance(values, level_names=("P3", "P4"), log=True)
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["P3", "P4", "level 2", "level 3"]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="levels"):
        plot_level_imbalance(np.zeros(5))


def test_history_with_logged_pfl_parameters():
    """The trainer records the loss dict's ``levels/`` tensors; PFL's per-level gamma plots the same way."""
    history = History()
    for it, g in enumerate(([2.5, 2.5, 2.0], [2.1, 2.3, 2.0]), start=1):
        history.record(it, 0.1, {"loss": torch.tensor(1.0), "levels/pfl_gamma": torch.tensor(g)})
    np.testing.assert_allclose(level_values(history, "levels/pfl_gamma"), [[2.5, 2.5, 2.0], [2.1, 2.3, 2.0]])
    ax = plot_level_imbalance(history, key="levels/pfl_gamma")
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [2.3, 2.4, 2.0])
    plt.close(ax.figure)
