"""Balanced Feature Pyramid (Libra R-CNN, Sec. 3.2) and its non-local block."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minidet.models.necks import FPN, BalancedFPN, NonLocal2d


def pyramid(c=8, b=2, size=64, levels=5, fill=None):
    sizes = [size // 2 ** i for i in range(levels)]
    if fill is not None:
        return [torch.full((b, c, s, s), fill) for s in sizes]
    return [torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(i)) for i, s in enumerate(sizes)]


class Identity(torch.nn.Module):
    out_channels, strides = 8, (4, 8, 16, 32, 64)

    def forward(self, x):
        return x


@pytest.mark.parametrize("refine", ["non_local", "conv", None])
def test_shapes_preserved(refine):
    bfp = BalancedFPN(Identity(), refine_level=2, refine=refine)
    feats = pyramid()
    outs = bfp(feats)
    assert [o.shape for o in outs] == [f.shape for f in feats]


def test_constant_input_doubles():
    """Constant levels: the integrated feature is that constant; the non-local block starts as the identity
    (zero-initialised output conv), so each level gets the constant added: 2c everywhere."""
    bfp = BalancedFPN(Identity(), refine_level=2, refine="non_local")
    outs, integrated, refined = bfp.balance(pyramid(fill=1.5))
    assert torch.allclose(integrated, torch.full_like(integrated, 1.5))
    assert torch.allclose(refined, integrated)
    for o in outs:
        assert torch.allclose(o, torch.full_like(o, 3.0))


def test_integration_is_mean_of_rescaled_levels():
    """Eq. 2 by hand: max-pool the finer levels, nearest-upsample the coarser ones, average."""
    feats = pyramid()
    bfp = BalancedFPN(Identity(), refine_level=2, refine=None)
    outs, integrated, _ = bfp.balance(feats)
    size = feats[2].shape[-2:]
    by_hand = (F.max_pool2d(feats[0], 4) + F.max_pool2d(feats[1], 2) + feats[2]
               + F.interpolate(feats[3], scale_factor=2, mode="nearest") + F.interpolate(feats[4], scale_factor=4, mode="nearest")) / 5
    assert integrated.shape[-2:] == size
    assert torch.allclose(integrated, by_hand, atol=1e-6)
    # strengthen: the residual goes back by nearest upsampling (finer) and max-pooling (coarser)
    assert torch.allclose(outs[0], feats[0] + F.interpolate(integrated, scale_factor=4, mode="nearest"), atol=1e-6)
    assert torch.allclose(outs[4], feats[4] + F.max_pool2d(integrated, 4), atol=1e-6)


def test_non_local_attention_rows_sum_to_one_and_mix():
    block = NonLocal2d(8)
    torch.nn.init.normal_(block.out.weight, std=0.1)
    x = torch.randn(2, 8, 6, 6)
    att = block.attention(x)
    assert att.shape == (2, 36, 36)
    assert torch.allclose(att.sum(-1), torch.ones(2, 36), atol=1e-5)
    y = block(x)
    # a change at one position reaches every position (non-local), unlike a 3x3 conv
    x2 = x.clone()
    x2[:, :, 0, 0] += 5
    assert (block(x2) - y)[:, :, 5, 5].abs().sum() > 0


def test_after_real_fpn_and_gradients():
    fpn = FPN((16, 32, 64, 128), (4, 8, 16, 32), 16, num_extra=1, extra_source="pool")
    bfp = BalancedFPN(fpn)
    assert bfp.strides == (4, 8, 16, 32, 64) and bfp.out_channels == 16
    feats = [torch.randn(1, c, 64 // 2 ** i, 64 // 2 ** i, requires_grad=True) for i, c in enumerate((16, 32, 64, 128))]
    outs = bfp(feats)
    assert [o.shape[-1] for o in outs] == [64, 32, 16, 8, 4]
    sum(o.sum() for o in outs).backward()
    assert all(f.grad is not None for f in feats)


def test_bad_arguments():
    with pytest.raises(ValueError, match="refine"):
        BalancedFPN(Identity(), refine="attention")
    with pytest.raises(ValueError, match="refine_level"):
        BalancedFPN(Identity(), refine_level=7).balance(pyramid())


@pytest.mark.cuda
def test_bfp_cuda(cuda_device):
    bfp = BalancedFPN(Identity())
    torch.nn.init.normal_(bfp.refine.out.weight, std=0.1)
    feats = pyramid()
    cpu = bfp(feats)
    gpu = bfp.to(cuda_device)([f.to(cuda_device) for f in feats])
    for a, b in zip(cpu, gpu):
        assert torch.allclose(a, b.cpu(), atol=1e-4)


def test_inits_of_the_two_reference_codebases():
    """"mmdetection" (default): the non-local block starts as the identity (output conv zero, theta/phi/g
    normal std 0.01); "libra" (the Libra R-CNN repository): every conv Xavier-uniform, the output conv
    included, so the block changes its input from the start. Bound of Xavier-uniform by hand: sqrt(6 / (fan_in + fan_out))."""
    c = 8
    bound = (6 / (c + c)) ** 0.5  # 1x1 convs, c -> c channels
    mm = BalancedFPN(Identity(), refine="non_local")
    assert mm.init == "mmdetection"
    assert mm.refine.out.weight.eq(0).all() and mm.refine.out.bias.eq(0).all()
    assert mm.refine.theta.weight.abs().max() < 0.06  # std 0.01: far inside the Xavier range
    torch.manual_seed(0)
    libra = BalancedFPN(Identity(), refine="non_local", init="libra")
    for conv in (libra.refine.theta, libra.refine.phi, libra.refine.g, libra.refine.out):
        w = conv.weight
        assert w.abs().max() <= bound and w.abs().max() > 0.5 * bound and w.std() > 0.2  # U(-a, a) has std a / sqrt(3)
        assert conv.bias.eq(0).all()
    _, integrated, refined = libra.balance(pyramid())
    assert not torch.allclose(refined, integrated)
    conv = BalancedFPN(Identity(), refine="conv").refine  # both codebases Xavier the 3x3 refine conv
    assert conv.weight.abs().max() <= (6 / (8 * 9 + 8 * 9)) ** 0.5 and conv.bias.eq(0).all()
    with pytest.raises(ValueError, match="init"):
        BalancedFPN(Identity(), init="kaiming")


def test_factory_bfp_init_choice():
    from minidet.models import build_faster_rcnn

    assert build_faster_rcnn(3, bfp=True).neck.init == "mmdetection"
    assert build_faster_rcnn(3, bfp="libra").neck.init == "libra"
    assert build_faster_rcnn(3, bfp="libra").neck.refine.out.weight.abs().sum() > 0
