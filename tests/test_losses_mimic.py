"""MimicDet's mimic loss on hand-made features, and hard negative mining against a per-image reference."""
from __future__ import annotations

import math

import pytest
import torch

from minidet.losses import mean_cosine, mimic_loss
from minidet.samplers import hard_negative_mask


def test_mimic_loss_values_on_hand_made_features():
    # three samples, one path each: orthogonal (cos 0), parallel with another length (cos 1), opposite (cos -1)
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]])
    t = torch.tensor([[[0.0, 1.0], [2.0, 2.0], [-3.0, 0.0]]])
    every = torch.ones(1, 3, dtype=torch.bool)
    loss, (cos,) = mimic_loss([(s, t)], every)
    assert float(cos) == pytest.approx((0 + 1 - 1) / 3, abs=1e-6)
    assert float(loss) == pytest.approx((1 + 0 + 2) / 3, abs=1e-6)
    # only the masked samples count: the orthogonal and the parallel one
    loss, _ = mimic_loss([(s, t)], torch.tensor([[True, True, False]]))
    assert float(loss) == pytest.approx(0.5, abs=1e-6)
    # an empty B_m gives no loss
    loss, _ = mimic_loss([(s, t)], torch.zeros(1, 3, dtype=torch.bool))
    assert float(loss) == 0.0


def test_dual_path_sums_the_paths_and_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    s_cls, t_cls = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    s_reg, t_reg = torch.randn(2, 5, 16, generator=g), torch.randn(2, 5, 16, generator=g)
    mask = torch.rand(2, 5, generator=g) > 0.3
    loss, cosines = mimic_loss([(s_cls, t_cls), (s_reg, t_reg)], mask)
    # reference: the paper's mean over B_m of the summed (1 - cos), written out with dot products and norms
    ref, n = 0.0, 0
    for b in range(2):
        for i in range(5):
            if mask[b, i]:
                n += 1
                for s, t in ((s_cls, t_cls), (s_reg, t_reg)):
                    a, c = s[b, i].double(), t[b, i].double()
                    ref += 1 - float(a @ c) / math.sqrt(float(a @ a) * float(c @ c))
    assert float(loss) == pytest.approx(ref / n, rel=1e-5)
    assert float(cosines[0]) == pytest.approx(float(mean_cosine(s_cls, t_cls, mask)), rel=1e-6)


def test_mimic_gradient_reaches_the_student_only():
    s = torch.randn(1, 4, 8, requires_grad=True)
    t = torch.randn(1, 4, 8, requires_grad=True)
    loss, _ = mimic_loss([(s, t)], torch.ones(1, 4, dtype=torch.bool))
    loss.backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0


def test_hard_negative_mask_matches_per_image_topk():
    g = torch.Generator().manual_seed(1)
    loss = torch.rand(3, 50, generator=g)
    neg = torch.rand(3, 50, generator=g) > 0.4
    num = torch.tensor([4, 0, 100])  # more than there are negatives in the last image
    mask = hard_negative_mask(loss, neg, num)
    for b in range(3):
        cand = neg[b].nonzero().squeeze(1)
        k = min(int(num[b]), len(cand))
        expected = set(cand[loss[b, cand].topk(k).indices].tolist())
        assert set(mask[b].nonzero().squeeze(1).tolist()) == expected
