"""Training-curve plots and focal-loss pictures run headless and draw the right numbers."""
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minidet.engine.history import History  # noqa: E402
from minidet.viz.focal import focal_curves, focal_loss_explorer, plot_focal_loss  # noqa: E402
from minidet.viz.training import (  # noqa: E402
    plot_level_losses, plot_loss_components, plot_lr, plot_pos_neg_per_level, running_mean,
)


@pytest.fixture
def fake_rows():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(1, 31):
        cls = rng.random(5) / i
        box = rng.random(5) / i
        rows.append({"iter": i, "lr": 1e-3 * min(1, i / 10), "loss": float(cls.sum() + box.sum()),
                     "loss_cls": float(cls.sum()), "loss_box": float(box.sum()),
                     "levels/loss_cls": cls.tolist(), "levels/loss_box": box.tolist(),
                     "levels/num_pos": [10.0, 6.0, 2.0, 1.0, 0.0], "levels/num_neg": [9000.0, 2200.0, 560.0, 140.0, 36.0]})
    return rows


def test_training_plots_draw_every_series(fake_rows):
    fig, axes = plt.subplots(2, 3)
    ax = plot_loss_components(fake_rows, ax=axes[0, 0], smooth=5, log=True)
    assert len(ax.lines) == 6 and ax.get_yscale() == "log"  # 3 smoothed + 3 raw
    ax = plot_level_losses(History(fake_rows), ax=axes[0, 1], smooth=5)
    assert len(ax.lines) == 5 and [t.get_text() for t in ax.get_legend().get_texts()] == ["P3", "P4", "P5", "P6", "P7"]
    np.testing.assert_allclose(ax.lines[0].get_ydata()[0], fake_rows[0]["levels/loss_cls"][0])
    ax = plot_level_losses(fake_rows, key="levels/num_neg", ax=axes[0, 2], level_names=("P3", "P4"), smooth=1)
    assert [t.get_text() for t in ax.get_legend().get_texts()][2] == "level 2"
    assert plot_lr(fake_rows, ax=axes[1, 0]).lines[0].get_ydata()[-1] == pytest.approx(1e-3)
    ax = plot_pos_neg_per_level(fake_rows[0]["levels/num_pos"], fake_rows[0]["levels/num_neg"], ax=axes[1, 1])
    assert len(ax.patches) == 10
    for ax in axes.flat[:5]:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(KeyError, match="levels/nope"):
        plot_level_losses(fake_rows, key="levels/nope")
    plt.close("all")


def test_running_mean_matches_a_loop():
    x = np.arange(10.0)
    expect = [np.mean(x[max(0, i - 2):i + 1]) for i in range(10)]
    np.testing.assert_allclose(running_mean(x, 3), expect)
    np.testing.assert_allclose(running_mean(np.stack([x, 2 * x], 1), 3)[:, 1], 2 * np.array(expect))


def test_focal_curves_hand_computed_at_half_and_point_nine():
    c = focal_curves([0.5, 0.9], gamma=2.0, alpha=0.25)
    # p = 0.5: positive -0.25 * 0.5^2 * log 0.5, negative -0.75 * 0.5^2 * log 0.5
    assert c["loss_pos"][0] == pytest.approx(0.25 * 0.25 * math.log(2))
    assert c["loss_neg"][0] == pytest.approx(0.75 * 0.25 * math.log(2))
    # p = 0.9: positive p_t = 0.9, negative p_t = 0.1
    assert c["loss_pos"][1] == pytest.approx(-0.25 * 0.1 ** 2 * math.log(0.9))
    assert c["loss_neg"][1] == pytest.approx(-0.75 * 0.9 ** 2 * math.log(0.1))
    # cross-entropy and its gradient p - y
    assert c["ce_pos"][1] == pytest.approx(-math.log(0.9))
    np.testing.assert_allclose(c["ce_grad_pos"], [-0.5, -0.1])
    np.testing.assert_allclose(c["ce_grad_neg"], [0.5, 0.9])
    no_alpha = focal_curves([0.5], gamma=0.0, alpha=None)
    assert no_alpha["loss_pos"][0] == pytest.approx(math.log(2)) == no_alpha["ce_pos"][0]


@pytest.mark.parametrize("gamma,alpha", [(2.0, 0.25), (0.5, None), (5.0, 0.9)])
def test_focal_gradients_match_finite_differences(gamma, alpha):
    x = np.array([-4.0, -1.0, 0.0, 0.7, 3.0])
    h = 1e-6
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    c = focal_curves(sig(x), gamma, alpha)
    up, down = focal_curves(sig(x + h), gamma, alpha), focal_curves(sig(x - h), gamma, alpha)
    for name in ("pos", "neg"):
        np.testing.assert_allclose(c[f"grad_{name}"], (up[f"loss_{name}"] - down[f"loss_{name}"]) / (2 * h), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(c[f"ce_grad_{name}"], (up[f"ce_{name}"] - down[f"ce_{name}"]) / (2 * h), rtol=1e-5, atol=1e-9)


def test_focal_curves_rejects_p_outside_open_interval():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        focal_curves([0.0, 0.5], 2.0, 0.25)


def test_plot_focal_loss_gamma_zero_is_cross_entropy():
    ax = plot_focal_loss(gammas=(0, 2))
    x, y = ax.lines[0].get_data()
    np.testing.assert_allclose(y, -np.log(x))
    assert "CE" in ax.get_legend().get_texts()[0].get_text()
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


def test_explorer_builds_headless_and_redraws_on_slider_change():
    import ipywidgets as widgets

    box = focal_loss_explorer(gamma=2.0, alpha=0.25)
    assert isinstance(box, widgets.VBox) and isinstance(box.output, widgets.Output)
    assert (box.gamma_slider.min, box.gamma_slider.max, box.alpha_slider.max) == (0.0, 5.0, 1.0)
    assert box.redraws == 1
    box.gamma_slider.value = 3.0
    assert box.redraws == 2
    box.alpha_enabled.value = False
    assert box.redraws == 3 and box.alpha_slider.disabled
    box.redraw()
    assert box.redraws == 4
    assert not plt.get_fignums()  # every figure was closed after being shown
