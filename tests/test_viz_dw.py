"""DW pictures: the GFL / VFL reference weight pairs on hand-computed values, the toy DW weights against
the library functions, the map helper's shapes on a tiny random model, and the explorer's redraws."""
import matplotlib

matplotlib.use("Agg")
import pytest
import torch

from minidet.assigners import dw_weights as dw
from minidet.models import build_dw
from minidet.viz.dw import (FIG1_SAMPLES, draw_dw_explorer, dw_maps, dw_toy_weights, dw_weight_explorer, gfl_weights,
                            kept_detection_ious, level_grids, plot_weight_maps, vfl_weights)


def test_gfl_weights_by_hand():
    # t = 0.8, s = 0.5, beta = 2: |s - t|^2 = 0.09 -> (0.8 * 0.09, 0.2 * 0.09)
    w_pos, w_neg = gfl_weights(torch.tensor([0.8, 0.3]), torch.tensor([0.5, 0.3]))
    torch.testing.assert_close(w_pos, torch.tensor([0.072, 0.0]))
    torch.testing.assert_close(w_neg, torch.tensor([0.018, 0.0]))
    # the coupling: w_neg / w_pos = (1 - t) / t whatever the score
    a, b = gfl_weights(torch.full((3,), 0.6), torch.tensor([0.1, 0.5, 0.9]))
    torch.testing.assert_close(b / a, torch.full((3,), 0.4 / 0.6))


def test_vfl_weights_by_hand():
    # positive t = 0.8: (t^2, t (1 - t)) = (0.64, 0.16); negative s = 0.5: (0, 0.75 * 0.25)
    w_pos, w_neg = vfl_weights(torch.tensor([0.8, 0.0]), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(w_pos, torch.tensor([0.64, 0.0]))
    torch.testing.assert_close(w_neg, torch.tensor([0.16, 0.1875]))


def test_toy_weights_follow_the_library():
    iou = torch.tensor([v[0] for v in FIG1_SAMPLES.values()], dtype=torch.float64)
    score = torch.tensor([v[1] for v in FIG1_SAMPLES.values()], dtype=torch.float64)
    out = dw_toy_weights(iou, score, pos_form="paper", neg_form="paper")
    assert out["w_pos"].sum().item() == pytest.approx(1.0)  # the paper's form normalises to 1
    t = score**0.8 * iou**0.2  # the paper's consistency
    num = torch.exp(5 * t) * t
    torch.testing.assert_close(out["w_pos"], num / num.sum())
    # the paper's P_neg: the fixed curve through (0.5, 1) and (0.95, 0)
    torch.testing.assert_close(out["p_neg"], ((iou**2 - 0.95**2) / (0.25 - 0.95**2)).clamp(0, 1).where(iou >= 0.5, 1.0).float())
    code = dw_toy_weights(iou, score)
    assert code["w_pos"].sum().item() > 1.0  # exponents 5 over 3
    # the best IoU (A and B tie) is never a negative; every IoU >= 0.5, so the code form gives the worst 1
    assert code["p_neg"][:2].abs().max().item() < 1e-6 and code["p_neg"][3].item() == pytest.approx(1.0)
    assert out["p_neg"][3].item() < 1.0
    torch.testing.assert_close(code["w_neg"], code["p_neg"].double() * score**2)


def test_maps_shapes_on_a_tiny_model():
    torch.manual_seed(0)
    model = build_dw(3, fpn_channels=16, head_convs=1)
    images = torch.rand(2, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[8.0, 8, 40, 36], [30, 20, 60, 60]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[4.0, 10, 20, 30]]), "labels": torch.tensor([1])}]
    model.train()
    maps = dw_maps(model, images, targets)
    assert model.training  # restored
    a = sum(maps["level_sizes"])
    assert maps["level_sizes"] == [64, 16, 4, 1, 1]
    for key in ("prior", "w_pos", "iou", "p_cls", "p_loc"):
        assert maps[key].shape == (2, a, 2), key
    for key in ("p_neg", "w_neg", "scores"):
        assert maps[key].shape == (2, a, 3), key
    assert maps["w_pos"][1, :, 1].abs().sum() == 0  # padding ground truth
    prior = dw.center_prior(maps["points"], maps["strides"], torch.tensor([[[4.0, 10, 20, 30], [0, 0, 0, 0]]]),
                            torch.tensor([[True, False]]))
    torch.testing.assert_close(maps["prior"][1:], prior)
    grids = level_grids(maps["w_neg"][0, :, 0], maps["points"], maps["level_sizes"])
    assert [g.shape for g in grids] == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    fig = plot_weight_maps(maps, images[0], targets[0]["boxes"][0], 0, 0, levels=(0, 1))
    assert len(fig.axes) == 3 * 2 + 3  # panels and one colour bar per row
    model.eval()
    model.score_thresh = 0.0
    dataset = list(zip(images, targets))
    ious = kept_detection_ious(model, dataset, [0, 1], score_thresh=0.0)
    assert ious.ndim == 1 and ((ious >= 0) & (ious <= 1)).all()


def test_explorer_redraws_on_change():
    fig = draw_dw_explorer(iou=0.3, score=0.9, form="paper")
    assert len(fig.axes) == 3
    box = dw_weight_explorer()
    n = box.redraws
    box.controls["iou"].value = 0.95
    box.controls["form"].value = "paper"
    assert box.redraws == n + 2
