import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_focal

from minidet.losses import cross_entropy_loss, giou_loss, level_index, sigmoid_focal_loss, smooth_l1_loss, sum_per_level


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 0.0), (-1.0, 1.5), (0.75, 3.0)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_focal_equals_torchvision(alpha, gamma, reduction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 50, 6, generator=g, dtype=torch.float64) * 4
    y = (torch.rand(4, 50, 6, generator=g) > 0.8).double()
    torch.testing.assert_close(sigmoid_focal_loss(x, y, alpha, gamma, reduction), tv_focal(x, y, alpha, gamma, reduction))


def test_focal_hand_computed():
    # p = sigmoid(0) = 0.5; positive: -0.25 * 0.5^2 * log 0.5 ; negative: -0.75 * 0.5^2 * log 0.5
    out = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out, torch.tensor([0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)]))


def test_focal_is_finite_for_extreme_logits_and_reduces_to_bce():
    x = torch.tensor([-100.0, 100.0, -100.0, 100.0])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert torch.isfinite(sigmoid_focal_loss(x, y)).all()
    z = torch.randn(30)
    t = (torch.rand(30) > 0.5).float()
    torch.testing.assert_close(sigmoid_focal_loss(z, t, alpha=-1, gamma=0.0), cross_entropy_loss(z, t))


def test_focal_per_level_tensor_parameters_broadcast():
    x = torch.randn(2, 5, 3)
    y = (torch.rand(2, 5, 3) > 0.5).float()
    gamma = torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0])[None, :, None]
    out = sigmoid_focal_loss(x, y, alpha=0.25, gamma=gamma)
    torch.testing.assert_close(out[:, 4], sigmoid_focal_loss(x[:, 4], y[:, 4], 0.25, 3.0))


def test_smooth_l1_hand_values():
    beta = 1 / 9
    out = smooth_l1_loss(torch.tensor([0.05, 1.0]), torch.zeros(2), beta=beta)
    torch.testing.assert_close(out, torch.tensor([0.5 * 0.05**2 / beta, 1.0 - 0.5 * beta]))


def test_giou_loss_hand_case():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 0, 3, 2]])  # IoU = 2/6, enclosing area 6 = union -> GIoU = 1/3
    torch.testing.assert_close(giou_loss(a, b), torch.tensor([1 - 1 / 3]))
    far = torch.tensor([[10.0, 0, 12, 2]])  # IoU 0, enclosing 24, union 8 -> GIoU = -2/3
    torch.testing.assert_close(giou_loss(a, far), torch.tensor([1 + 2 / 3]))


def test_sum_per_level_matches_manual_split():
    sizes = [6, 3, 1]
    levels = level_index(sizes)
    assert levels.tolist() == [0] * 6 + [1] * 3 + [2]
    v = torch.randn(2, 10, 4)
    out = sum_per_level(v, levels, 3)
    ref = torch.stack([p.sum() for p in v.split(sizes, dim=1)])
    torch.testing.assert_close(out, ref)
    assert F.l1_loss(out.sum(), v.sum()) < 1e-5
