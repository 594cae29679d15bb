"""PFL pictures: the gamma_ad curve follows Eq. 4 and its clipping; the explorer redraws on change."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from minidet.viz.pfl import draw_pfl_explorer, gamma_ad_curve, pfl_explorer, sample_positive_probs


def test_paper_curve_is_clipped_minus_log_mean():
    means = np.array([0.01, 0.2, 0.3, 0.9])
    got = gamma_ad_curve(means, gamma=2.0, delta=0.5, w=0.5, variant="paper")
    want = np.clip(-np.log(means), 1.5, 2.5)
    np.testing.assert_allclose(got, want, atol=0.03)  # the Beta samples' mean is close to, not exactly, the target


def test_official_is_never_below_paper():
    means = np.linspace(0.05, 0.95, 10)
    assert np.all(gamma_ad_curve(means, 2, 0.5, 0.5, "official") >= gamma_ad_curve(means, 2, 0.5, 0.5, "paper") - 1e-9)


def test_sampling_leaves_torch_rng_alone():
    torch.manual_seed(5)
    a = torch.rand(1)
    torch.manual_seed(5)
    sample_positive_probs(0.4)
    assert torch.equal(torch.rand(1), a)
    assert sample_positive_probs(0.4).mean().item() == pytest.approx(0.4, abs=0.02)


def test_explorer_redraws_on_change():
    fig = draw_pfl_explorer(mean_p=0.5, variant="official")
    assert len(fig.axes) == 3
    box = pfl_explorer()
    n = box.redraws
    box.controls["mean_p"].value = 0.8
    box.controls["variant"].value = "official"
    assert box.redraws == n + 2
