"""Balanced L1 (Libra R-CNN, Sec. 3.3) against hand computation, its gradient, and continuity at |x| = beta."""
from __future__ import annotations

import math

import pytest
import torch

from minidet.losses.balanced_l1 import balanced_l1_b, balanced_l1_grad, balanced_l1_loss


def hand(x: float, alpha=0.5, gamma=1.5, beta=1.0) -> float:
    b = math.exp(gamma / alpha) - 1
    x = abs(x)
    if x < beta:
        return alpha / b * (b * x + 1) * math.log(b * x / beta + 1) - alpha * x
    return gamma * x + gamma / b - alpha * beta


def test_b_from_constraint():
    b = balanced_l1_b(0.5, 1.5)
    assert b == pytest.approx(math.e ** 3 - 1)
    assert 0.5 * math.log(b + 1) == pytest.approx(1.5)  # alpha ln(b + 1) = gamma


@pytest.mark.parametrize("beta", [1.0, 0.5, 2.0])
def test_values_match_hand_computation(beta):
    xs = [-3.0, -1.0, -0.3, 0.0, 0.01, 0.4, 0.999, 1.0, 1.7]
    got = balanced_l1_loss(torch.tensor(xs, dtype=torch.float64), torch.zeros(len(xs), dtype=torch.float64), beta=beta)
    assert got.tolist() == pytest.approx([hand(x, beta=beta) for x in xs], rel=1e-12, abs=1e-12)


def test_paper_gradient_at_beta_one():
    """beta = 1: inside, the gradient is alpha ln(b|x| + 1) (the paper's promoted gradient); gamma outside."""
    x = torch.tensor([0.05, 0.3, 0.8, 1.5, 4.0], dtype=torch.float64, requires_grad=True)
    balanced_l1_loss(x, torch.zeros_like(x)).sum().backward()
    b = balanced_l1_b()
    expected = [0.5 * math.log(b * v + 1) if v < 1 else 1.5 for v in x.tolist()]
    assert x.grad.tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_autograd_equals_closed_form(beta):
    x = torch.linspace(0.01, 4, 97, dtype=torch.float64, requires_grad=True)
    balanced_l1_loss(x, torch.zeros_like(x), beta=beta).sum().backward()
    assert torch.allclose(x.grad, balanced_l1_grad(x.detach(), beta=beta), rtol=1e-10)


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.5])
def test_loss_continuous_gradient_continuous_only_at_beta_one(beta):
    eps = 1e-9
    left = torch.tensor([beta - eps], dtype=torch.float64)
    right = torch.tensor([beta + eps], dtype=torch.float64)
    z = torch.zeros(1, dtype=torch.float64)
    assert float(balanced_l1_loss(left, z, beta=beta)) == pytest.approx(float(balanced_l1_loss(right, z, beta=beta)), abs=1e-7)
    jump = float(balanced_l1_grad(right, beta=beta) - balanced_l1_grad(left, beta=beta))
    b = balanced_l1_b()
    assert jump == pytest.approx(-0.5 * (1 - beta) / (beta * (b + 1)), abs=1e-6)  # from the closed form
    if beta == 1.0:
        assert abs(jump) < 1e-6
    else:
        assert abs(jump) > 1e-3


def test_inliers_get_more_gradient_than_smooth_l1():
    """The point of the loss: for |x| < 1 its gradient exceeds smooth L1's (beta = 1) near zero... up to where
    alpha ln(bx + 1) = x; outliers are capped at gamma."""
    x = torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64)
    assert (balanced_l1_grad(x) > x).all()


def test_reductions_and_errors():
    p, t = torch.rand(3, 4), torch.rand(3, 4)
    none = balanced_l1_loss(p, t)
    assert balanced_l1_loss(p, t, reduction="sum") == pytest.approx(float(none.sum()))
    assert balanced_l1_loss(p, t, reduction="mean") == pytest.approx(float(none.mean()))
    with pytest.raises(ValueError, match="reduction"):
        balanced_l1_loss(p, t, reduction="avg")
    with pytest.raises(ValueError, match="beta"):
        balanced_l1_loss(p, t, beta=0)


@pytest.mark.cuda
def test_balanced_l1_cuda(cuda_device):
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    cpu = balanced_l1_loss(x, torch.zeros_like(x))
    gpu = balanced_l1_loss(x.to(cuda_device), torch.zeros_like(x, device=cuda_device))
    assert torch.allclose(cpu, gpu.cpu())
