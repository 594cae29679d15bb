"""DW pictures: the GFL / VFL reference weight pairs on hand-computed values, the toy DW weights against
the library functions, the map helper's shapes on a tiny random model, the explorers' redraws, and the map
explorer's cached outputs, settings and redraw time on a tiny untrained model."""
import io
import time

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from minidet.assigners import dw_weights as dw
from minidet.models import build_dw
from minidet.viz.dw import (FIG1_SAMPLES, DWMapSource, draw_dw_explorer, draw_dw_maps, dw_map_explorer, dw_maps,
                            dw_toy_weights, dw_weight_explorer, gfl_weights, kept_detection_ious, level_grids,
                            network_outputs, plot_weight_maps, vfl_weights, weight_maps)


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
    # the best IoU (A and D tie) is never a negative; every IoU >= 0.5, so the code form gives the worst (C) 1
    assert code["p_neg"][[0, 3]].abs().max().item() < 1e-6 and code["p_neg"][2].item() == pytest.approx(1.0)
    assert out["p_neg"][2].item() < 1.0
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


def _tiny_scene():
    """Two 128 px images (flat gray with two bright squares) and their targets, and a tiny untrained DW."""
    torch.manual_seed(0)
    images = torch.full((2, 3, 128, 128), 0.3)
    images[0, :, 20:60, 16:64] = 0.9
    images[1, :, 70:120, 40:100] = 0.8
    targets = [{"boxes": torch.tensor([[16.0, 20, 64, 60], [70, 60, 120, 110]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[40.0, 70, 100, 120]]), "labels": torch.tensor([1])}]
    return list(zip(images, targets)), build_dw(3, fpn_channels=16, head_convs=1)


def test_weight_maps_with_settings_equal_a_model_built_with_them():
    dataset, model = _tiny_scene()
    settings = {"mu": 3.0, "beta": 4.0, "gamma2": 1.0, "pos_weight_form": "paper", "neg_prob_form": "paper",
                "consistency_beta": 0.6}
    other = build_dw(3, fpn_channels=16, head_convs=1, **settings)
    other.load_state_dict(model.state_dict())
    images = torch.stack([d[0] for d in dataset])
    targets = [d[1] for d in dataset]
    got = weight_maps(model, network_outputs(model, images), targets, **settings)
    want = dw_maps(other, images, targets)
    for key in ("prior", "w_pos", "p_loc", "iou", "p_neg", "w_neg"):
        torch.testing.assert_close(got[key], want[key], msg=key)
    assert (model.mu, model.gamma2, model.pos_weight_form) == (5.0, 2.0, "code")  # the model itself is untouched
    other_beta = weight_maps(model, network_outputs(model, images), targets, **{**settings, "consistency_beta": 0.9})
    assert not torch.allclose(other_beta["w_pos"], got["w_pos"])  # the paper's beta reaches w_pos
    # w_neg = P_neg * s^gamma2 (DW Sec. 3), by hand
    torch.testing.assert_close(got["w_neg"], got["p_neg"] * got["scores"] ** 1.0)
    with pytest.raises(ValueError, match="unknown DW weight settings"):
        weight_maps(model, network_outputs(model, images), targets, gamma3=1.0)


def test_map_explorer_caches_the_network_and_redraws_fast():
    dataset, model = _tiny_scene()
    early = build_dw(3, fpn_channels=16, head_convs=1)
    calls = []
    for name, m in (("early", early), ("last", model)):
        forward = m.dense_outputs
        m.dense_outputs = lambda images, f=forward, n=name: calls.append(n) or f(images)
    source = DWMapSource({"early": early, "last": model}, dataset)
    box = dw_map_explorer(source, [0, 1], class_names=["a", "b", "c"])
    assert calls == ["last"]  # snapshot and live copy: one forward pass
    before = _pixels(box.figure)
    n = box.redraws
    start = time.perf_counter()
    box.controls["gamma2"].value = 3.5
    seconds = time.perf_counter() - start
    print(f"map explorer: gamma_2 redraw {seconds:.3f} s (weights + figure update)")
    assert box.redraws == n + 1 and calls == ["last"]  # only the weights were recomputed
    assert seconds < 1.0
    start = time.perf_counter()
    after = _pixels(box.figure)  # the figure rendered to pixels, as the notebook's PNG would be
    print(f"map explorer: rendering the redrawn figure {time.perf_counter() - start:.3f} s")
    assert before.shape == after.shape and np.abs(before - after).max() > 0  # w_neg's colours moved
    for key, value in (("mu", 2.0), ("beta", 3.0), ("pos_form", "paper"), ("paper_beta", 0.5), ("neg_form", "paper"),
                       ("level", "P3"), ("gt", 1)):
        box.controls[key].value = value
    assert calls == ["last"]
    box.controls["snapshot"].value = "early"
    box.controls["image"].value = 1
    assert calls == ["last", "early", "early"]  # one pass per new (snapshot, image)
    assert [v for _, v in box.controls["gt"].options] == [0]  # image 1's objects
    box.controls["snapshot"].value = "last"
    assert calls == ["last", "early", "early", "last"]
    box.controls["snapshot"].value = "early"
    assert calls == ["last", "early", "early", "last"]  # cached


def _pixels(fig) -> np.ndarray:
    """The figure rendered as the notebook's PNG would be (raw RGBA, ``(H, W, 4)``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="rgba", dpi=fig.dpi)
    w, h = (fig.get_size_inches() * fig.dpi).round().astype(int)
    return np.frombuffer(buf.getvalue(), np.uint8).reshape(h, w, 4).astype(np.int16)


def test_draw_dw_maps_shows_the_levels_with_candidates():
    dataset, model = _tiny_scene()
    maps = dw_maps(model, dataset[0][0][None], [dataset[0][1]])
    fig = draw_dw_maps(maps, dataset[0][0], dataset[0][1]["boxes"][0], 0, 0)
    assert len(fig.axes) == 6 + 4  # four maps, two scatter plots, the maps' colour bars
    (x0, x1), n_points = fig.axes[0].get_xlim(), len(fig.axes[4].collections[0].get_offsets())
    assert n_points == int(maps["inside"][0, :, 0].sum())  # every candidate of object 0 on every level
    assert 0 <= x0 < 16 and 64 < x1 <= 128  # the window around the box, inside the image
    one = draw_dw_maps(maps, dataset[0][0], dataset[0][1]["boxes"][0], 0, 0, level=0)
    level0 = sum(maps["level_sizes"][:1])
    assert len(one.axes[4].collections[0].get_offsets()) == int(maps["inside"][0, :level0, 0].sum())
