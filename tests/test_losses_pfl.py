"""Progressive Focal Loss (UMOP Eq. 3-5) and level-wise resampling (Eq. 1) against hand computations."""
import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss as tv_focal

import minidet.losses.pfl as pfl_module
from minidet.losses import ProgressiveFocalLoss, pfl_hyperparams, pfl_hyperparams_per_level
from minidet.models import build_retinanet


def test_paper_and_official_variants_inside_the_clip_range():
    p = torch.tensor([0.1, 0.2])
    g, a = pfl_hyperparams(p, variant="paper")
    assert g.item() == pytest.approx(-math.log(0.15), abs=1e-6)  # 1.897
    assert a.item() == pytest.approx(0.5 / -math.log(0.15), abs=1e-6)
    g_off, a_off = pfl_hyperparams(p, variant="official")
    assert g_off.item() == pytest.approx((-math.log(0.1) - math.log(0.2)) / 2, abs=1e-6)  # 1.956
    assert a_off.item() == pytest.approx(0.5 / g_off.item(), abs=1e-6)


def test_clipping_on_both_sides_and_other_settings():
    assert pfl_hyperparams(torch.tensor([0.01, 0.02]))[0].item() == 2.5  # -log 0.015 = 4.2 -> gamma + delta
    assert pfl_hyperparams(torch.tensor([0.9]))[0].item() == 1.5  # -log 0.9 = 0.105 -> gamma - delta
    g, a = pfl_hyperparams(torch.tensor([0.1, 0.2]), gamma=3.0, delta=1.0, w=0.6)  # 1.897 -> 2.0
    assert (g.item(), a.item()) == (2.0, pytest.approx(0.3))


def test_level_without_positives_gets_gamma_and_w_over_gamma():
    g, a = pfl_hyperparams(torch.zeros(0))
    assert (g.item(), a.item()) == (2.0, 0.25)
    g, a = pfl_hyperparams_per_level(torch.tensor([0.1, 0.2]), torch.tensor([0, 0]), 3, gamma=2.5, w=0.5)
    assert g[1:].tolist() == [2.5, 2.5] and a[1:].tolist() == pytest.approx([0.2, 0.2])


def test_jensen_official_never_below_paper():
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(200, generator=gen)
    levels = torch.randint(0, 5, (200,), generator=gen)
    kw = dict(delta=100.0, gamma=101.0)  # a clip range so wide it never binds
    paper = pfl_hyperparams_per_level(p, levels, 5, variant="paper", **kw)[0]
    official = pfl_hyperparams_per_level(p, levels, 5, variant="official", **kw)[0]
    assert (official >= paper).all() and (official > paper).any()


def test_per_level_equals_one_level_version_and_weight_mask():
    gen = torch.Generator().manual_seed(1)
    p = 0.05 + 0.3 * torch.rand(60, generator=gen)
    levels = torch.randint(0, 4, (60,), generator=gen)
    keep = torch.rand(60, generator=gen) > 0.3
    for variant in ("paper", "official"):
        g, a = pfl_hyperparams_per_level(p, levels, 4, variant=variant, weight=keep)
        for lvl in range(4):
            g1, a1 = pfl_hyperparams(p[keep & (levels == lvl)], variant=variant)
            torch.testing.assert_close((g[lvl], a[lvl]), (g1, a1))


def test_no_gradient_through_the_hyperparameters():
    p = torch.tensor([0.1, 0.3], requires_grad=True)
    g, a = pfl_hyperparams(p)
    assert not g.requires_grad and not a.requires_grad


def test_distributed_statistic_pools_sums_and_counts_before_clipping(monkeypatch):
    """Two simulated processes: the pooled result equals one process holding every positive."""
    mine, theirs = torch.tensor([0.5, 0.6, 0.7]), torch.tensor([0.01])
    captured = {}
    monkeypatch.setattr(pfl_module, "all_reduce_sum", lambda x: captured.setdefault("x", x))
    pfl_hyperparams(theirs, delta=1.9)
    monkeypatch.setattr(pfl_module, "all_reduce_sum", lambda x: x + captured["x"])
    g, _ = pfl_hyperparams(mine, delta=1.9)
    assert g.item() == pytest.approx(-math.log((0.5 + 0.6 + 0.7 + 0.01) / 4), abs=1e-6)  # 0.792, not clipped
    mean_of_means = (-math.log(0.6) - math.log(0.01)) / 2
    assert abs(g.item() - mean_of_means) > 1  # averaging per-process gammas would differ


def _pfl_case():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64) - 1
    levels = torch.tensor([0, 0, 0, 1, 1, 2])
    pos = torch.tensor([[True, False, True, False, False, False], [False, True, False, True, False, False]])
    labels = torch.tensor([[2, 0, 1, 0, 0, 0], [0, 0, 0, 2, 0, 0]])
    targets = torch.nn.functional.one_hot(labels, 3).double() * pos[..., None]
    return logits, targets, pos, levels


def test_pfl_loss_and_gradient_equal_focal_loss_with_constant_per_level_parameters():
    logits, targets, pos, levels = _pfl_case()
    x = logits.clone().requires_grad_(True)
    loss, stats = ProgressiveFocalLoss()(x, targets, pos, levels, 3)
    loss.sum().backward()
    probs = torch.sigmoid(logits)
    # level 0: positives (0, 0, class 2) and (1, 1, class 0); level 1: (1, 3, class 2); level 2: none
    p0 = [probs[0, 0, 2].item(), probs[1, 1, 0].item()]
    gammas = [min(2.5, max(1.5, -math.log(sum(p0) / 2))), min(2.5, max(1.5, -math.log(probs[1, 3, 2].item()))), 2.0]
    torch.testing.assert_close(stats["levels/pfl_gamma"], torch.tensor(gammas, dtype=torch.float32))
    torch.testing.assert_close(stats["levels/pfl_alpha"], 0.5 / torch.tensor(gammas, dtype=torch.float32))
    assert not stats["levels/pfl_gamma"].requires_grad
    ref_x = logits.clone().requires_grad_(True)
    ref = torch.cat([tv_focal(ref_x[:, levels == lvl], targets[:, levels == lvl], alpha=0.5 / g, gamma=g)
                     for lvl, g in enumerate(torch.tensor(gammas).tolist())], dim=1)
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-6, atol=1e-9)


class ConstantLoss(torch.nn.Module):
    """A classification loss that returns given per-element values: exercises the module interface."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def forward(self, logits, targets, pos, levels, num_levels):
        return self.values.expand_as(logits), {"levels/extra": torch.ones(num_levels)}


@pytest.mark.parametrize("resampling", [False, True, "pooled", "own_positives", "code"])
def test_detector_classification_loss_pooled_and_level_wise(resampling):
    values = torch.tensor([[[1.0, 2.0], [3.0, 0.5], [4.0, 4.0], [0.25, 0.25]]])  # (B=1, A=4, C=2)
    model = build_retinanet(2, cls_loss=ConstantLoss(values), level_resampling=resampling)
    levels = torch.tensor([0, 0, 1, 1])
    pos = torch.tensor([[True, True, False, False]])
    valid = torch.tensor([[True, True, True, False]])  # anchor 3 is ignored
    parts, stats = model.classification_loss(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), pos, valid, levels, 2)
    # level sums over valid elements: level 0: 1 + 2 + 3 + 0.5 = 6.5 (2 positives); level 1: 8 (0 positives)
    own = resampling in (True, "own_positives")  # the other forms divide every level by the 2 positives in all
    expected = [6.5 / 2 / 2, 8 / 1 / 2] if own else [6.5 / 2, 8 / 2]
    torch.testing.assert_close(parts, torch.tensor(expected))
    assert stats["levels/extra"].tolist() == [1.0, 1.0]


@pytest.mark.cuda
def test_pfl_cuda_equals_cpu(cuda_device):
    logits, targets, pos, levels = _pfl_case()
    cpu, cpu_stats = ProgressiveFocalLoss(variant="official")(logits, targets, pos, levels, 3)
    gpu, gpu_stats = ProgressiveFocalLoss(variant="official")(
        logits.to(cuda_device), targets.to(cuda_device), pos.to(cuda_device), levels.to(cuda_device), 3)
    torch.testing.assert_close(gpu.cpu(), cpu)
    torch.testing.assert_close(gpu_stats["levels/pfl_gamma"].cpu(), cpu_stats["levels/pfl_gamma"])


def authors_level_gamma(pos_probs: torch.Tensor, gamma: float = 2.0, delta: float = 0.5) -> float:
    """zimoqingfeng/UMOP LRPHead.loss_single, one level: mean of -log p over the entries > 0, else 2; clamped."""
    xse = -torch.log(pos_probs.float())
    cond = float(xse[xse > 0].mean()) if (xse > 0).any() else 2.0
    return min(max(cond, gamma - delta), gamma + delta)


def test_positives_at_probability_one_count_here_but_not_in_the_authors_code():
    """Documented difference (pfl.py): a positive with p = 1.0 in float32 drops out of the authors' mean;
    a level whose positives all have p = 1 gets 2 (= gamma) there and gamma - delta here."""
    certain = torch.tensor([1.0, 1.0])
    g, _ = pfl_hyperparams(certain, variant="official")
    assert float(g) == 1.5 and authors_level_gamma(certain) == 2.0
    mixed = torch.tensor([1.0, 0.2, 0.3])
    g, _ = pfl_hyperparams(mixed, variant="official")
    # here: (0 - log 0.2 - log 0.3) / 3 = 0.938 -> clipped to 1.5; authors: (-log 0.2 - log 0.3) / 2 = 1.41 -> 1.5 too
    assert float(g) == 1.5 and authors_level_gamma(mixed) == 1.5
    near = torch.tensor([1.0, 0.05, 0.1])  # here 1.766, authors 2.649 -> clipped 2.5
    g, _ = pfl_hyperparams(near, variant="official")
    torch.testing.assert_close(g, torch.tensor((-math.log(0.05) - math.log(0.1)) / 3))
    assert authors_level_gamma(near) == 2.5
    g, _ = pfl_hyperparams(torch.zeros(0), variant="official")  # no positive: gamma in both
    assert float(g) == 2.0 and authors_level_gamma(torch.zeros(0)) == 2.0
