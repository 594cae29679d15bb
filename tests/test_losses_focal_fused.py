"""Fused focal loss (loss + gradient in one pass) against torchvision's op and minidet's per-element
focal / PFL losses in float64: the PyTorch fallback here, the Triton kernel under Triton's interpreter
(CPU, in a subprocess) and, with a GPU, on CUDA."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_focal

from minidet.bench_focal import main as bench_main
from minidet.losses import (
    FocalLoss, ProgressiveFocalLoss, fused_sigmoid_focal_loss, one_hot_to_labels, sigmoid_focal_loss,
)
from minidet.models import build_retinanet

ROOT = Path(__file__).resolve().parents[1]


def _case(B=2, A=37, C=7, dtype=torch.float64, seed=0, device="cpu"):
    """Logits, class indices (-1 = background, about a third positive), ignore mask, one-hot targets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, A, C, generator=g, dtype=torch.float64) * 4
    labels = torch.where(torch.rand(B, A, generator=g) < 0.35, torch.randint(0, C, (B, A), generator=g), -1)
    valid = torch.rand(B, A, generator=g) > 0.2
    onehot = F.one_hot(labels.clamp(min=0), C).double() * (labels >= 0)[..., None]
    return x.to(device, dtype), labels.to(device), valid.to(device), onehot.to(device)


def _loss_and_grad(fn, x, weight):
    """Value of ``fn(x)`` (B, A) and the gradient of ``sum(weight * fn(x))``: a non-uniform grad_output."""
    x = x.detach().clone().requires_grad_(True)
    rows = fn(x)
    (grad,) = torch.autograd.grad((rows * weight).sum(), x)
    return rows.detach(), grad


@pytest.mark.parametrize("one_pass", [True, False])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.75, 1.5), (0.5, 3.0)])
def test_fallback_equals_torchvision_values_and_gradients(alpha, gamma, one_pass):
    x, labels, valid, onehot = _case()
    w = torch.rand(labels.shape, dtype=torch.float64)
    fused = lambda z: fused_sigmoid_focal_loss(z, labels, gamma, alpha, valid=valid, backend="torch", one_pass=one_pass)
    rows, grad = _loss_and_grad(fused, x, w)
    ref_rows, ref_grad = _loss_and_grad(lambda z: tv_focal(z, onehot, alpha, gamma).sum(-1) * valid, x, w)
    assert rows.dtype == torch.float64 and grad.dtype == torch.float64
    torch.testing.assert_close(rows, ref_rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("one_pass", [True, False])
def test_gradcheck_with_per_level_parameters(one_pass):
    x, labels, valid, _ = _case(B=2, A=6, C=3)
    levels = torch.tensor([0, 0, 0, 1, 1, 2])
    gamma = torch.tensor([1.5, 2.0, 2.5], dtype=torch.float64)
    fn = lambda z: fused_sigmoid_focal_loss(z, labels, gamma, 0.5 / gamma, levels, valid, backend="torch",
                                            one_pass=one_pass)
    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(True),))


def test_per_level_parameters_equal_focal_loss_with_broadcast_parameters():
    x, labels, valid, onehot = _case(A=40)
    levels = torch.arange(40) // 10  # four levels of 10 anchors
    gamma = torch.tensor([1.5, 1.9, 2.2, 2.5], dtype=torch.float64)
    alpha = 0.5 / gamma
    w = torch.rand(labels.shape, dtype=torch.float64)
    fused = lambda z: fused_sigmoid_focal_loss(z, labels, gamma, alpha, levels, valid, backend="torch")
    rows, grad = _loss_and_grad(fused, x, w)
    per_elem = lambda z: sigmoid_focal_loss(z, onehot, alpha[levels][None, :, None], gamma[levels][None, :, None])
    ref_rows, ref_grad = _loss_and_grad(lambda z: per_elem(z).sum(-1) * valid, x, w)
    torch.testing.assert_close(rows, ref_rows, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_fused_pfl_equals_pfl_module_per_element(variant):
    x, labels, _, onehot = _case(A=40, C=5, seed=3)
    pos = labels >= 0
    levels = torch.arange(40) // 10
    ref_x, fused_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref, ref_stats = ProgressiveFocalLoss(variant=variant)(ref_x, onehot, pos, levels, 4)
    out, stats = ProgressiveFocalLoss(variant=variant, fused=True)(fused_x, labels, pos, levels, 4)  # class indices
    assert out.shape == (2, 40, 1)
    torch.testing.assert_close(stats, ref_stats, rtol=0, atol=0)  # same gamma_ad, alpha_ad
    assert not stats["levels/pfl_gamma"].equal(torch.full((4,), 2.0))  # the levels really differ from focal
    torch.testing.assert_close(out, ref.sum(-1, keepdim=True), rtol=1e-12, atol=1e-12)
    w = torch.rand(2, 40, 1, dtype=torch.float64)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(fused_x.grad, ref_x.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_level", [False, True])
@pytest.mark.parametrize("chunk", [5, 64, 1 << 15])
def test_cpu_blocks_equal_the_whole_batch_lines(chunk, per_level):
    """The CPU path (blocks of rows, negatives first, positives replaced) against the whole-batch lines of
    the module docstring, in float64: values, gradients, ignore mask, row scale, out-of-range labels."""
    from minidet.losses.focal_fused import focal_rows_chunked, focal_rows_whole

    x, labels, valid, _ = _case(B=3, A=41, C=6)
    x[0, :3] = torch.tensor([60.0, -60.0, 25.0], dtype=torch.float64)[:, None]  # saturated rows
    labels[0, :3] = torch.tensor([2, 2, 7])  # 7 = C + 1: background
    levels = torch.arange(41) % 3 if per_level else None
    gamma = torch.tensor([1.5, 2.0, 2.5], dtype=torch.float64) if per_level else torch.tensor([2.0], dtype=torch.float64)
    alpha = torch.tensor([0.3, -1.0, 0.2], dtype=torch.float64) if per_level else torch.tensor([0.25], dtype=torch.float64)
    scale = torch.rand(3, 41, dtype=torch.float64)
    got = focal_rows_chunked(x, labels, valid, levels, gamma, alpha, scale, True, True, chunk_elements=chunk)
    want = focal_rows_whole(x, labels, valid, levels, gamma, alpha, scale, True, True)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)
    assert got[1][~valid].abs().max() == 0  # ignored rows: no gradient at all


def test_cpu_blocks_in_bf16_logits_compute_in_float32():
    from minidet.losses.focal_fused import focal_rows_chunked, focal_rows_whole

    x, labels, valid, _ = _case(B=2, A=50, C=9, dtype=torch.bfloat16)
    one = torch.ones(1)
    rows, grad = focal_rows_chunked(x, labels, valid, None, 2.0 * one, 0.25 * one, None, True, True, chunk_elements=40)
    ref_rows, ref_grad = focal_rows_whole(x, labels, valid, None, 2.0 * one, 0.25 * one, None, True, True)
    assert rows.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(rows, ref_rows, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-3)


def test_ignore_mask_zeroes_loss_and_gradient_only_where_ignored():
    x, labels, valid, _ = _case()
    w = torch.rand(labels.shape, dtype=torch.float64)
    rows, grad = _loss_and_grad(lambda z: fused_sigmoid_focal_loss(z, labels, valid=valid, backend="torch"), x, w)
    all_rows, all_grad = _loss_and_grad(lambda z: fused_sigmoid_focal_loss(z, labels, backend="torch"), x, w)
    assert (~valid).any() and (rows[~valid] == 0).all() and (grad[~valid] == 0).all()
    assert (all_rows[~valid] > 0).all() and (all_grad[~valid] != 0).any()
    torch.testing.assert_close(rows[valid], all_rows[valid], rtol=0, atol=0)
    torch.testing.assert_close(grad[valid], all_grad[valid], rtol=0, atol=0)


def test_class_index_targets_and_background_encodings():
    x, labels, _, onehot = _case()
    assert one_hot_to_labels(onehot).equal(labels)
    as_c = torch.where(labels < 0, 7, labels)  # background given as C instead of -1
    ref = tv_focal(x, onehot, 0.25, 2.0).sum(-1)
    for lab in (labels, as_c):
        torch.testing.assert_close(fused_sigmoid_focal_loss(x, lab, backend="torch"), ref, rtol=1e-12, atol=1e-12)
    # hand case: p = sigmoid(0) = 1/2 everywhere; class 1 positive -> 0.25 * 0.25 * log 2, others 0.75 * 0.25 * log 2
    hand = fused_sigmoid_focal_loss(torch.zeros(1, 2, 3, dtype=torch.float64), torch.tensor([[1, -1]]), backend="torch")
    log2 = torch.log(torch.tensor(2.0, dtype=torch.float64))
    torch.testing.assert_close(hand, torch.stack([(0.25 + 2 * 0.75) * 0.25 * log2, 3 * 0.75 * 0.25 * log2])[None])


def test_extreme_logits_are_finite_and_exact():
    x = torch.tensor([[[-1000.0, -60.0, 0.0, 60.0, 1000.0]] * 3], dtype=torch.float64)
    labels = torch.tensor([[0, 4, 2]])  # confidently wrong, confidently right, unsure positives
    onehot = F.one_hot(labels, 5).double()
    rows, grad = _loss_and_grad(lambda z: fused_sigmoid_focal_loss(z, labels, backend="torch"), x, torch.ones(1, 3))
    assert torch.isfinite(rows).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(rows, tv_focal(x, onehot, 0.25, 2.0).sum(-1))
    # d/dx of -0.25 * log sigmoid(x) at x = -1000 is -0.25 (p_t = 0, gamma term vanishes)
    assert grad[0, 0, 0].item() == pytest.approx(-0.25)


@pytest.mark.parametrize("resampling", [False, True])
@pytest.mark.parametrize("make_loss", [FocalLoss, ProgressiveFocalLoss])
def test_fused_modules_give_the_detector_the_same_level_losses_and_gradients(make_loss, resampling):
    x, labels, valid, onehot = _case(B=2, A=40, C=4, dtype=torch.float32, seed=5)
    pos, levels = labels >= 0, torch.arange(40) // 10
    results = []
    for fused in (False, True):
        model = build_retinanet(4, cls_loss=make_loss(fused=fused), level_resampling=resampling)
        xx = x.clone().requires_grad_(True)
        parts, stats = model.classification_loss(xx, labels.clamp(min=0), pos, valid, levels, 4)
        parts.sum().backward()
        results.append((parts.detach(), stats, xx.grad))
    (ref, ref_stats, ref_grad), (out, stats, grad) = results
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(stats, ref_stats)
    torch.testing.assert_close(grad, ref_grad)
    assert "fused=True" in repr(make_loss(fused=True)) and "fused" not in repr(make_loss())


def test_bad_arguments_are_named():
    x, labels, _, _ = _case()
    with pytest.raises(ValueError, match="labels"):
        fused_sigmoid_focal_loss(x, labels[:, :5])
    with pytest.raises(ValueError, match="valid"):
        fused_sigmoid_focal_loss(x, labels, valid=labels.float())
    with pytest.raises(ValueError, match="levels"):
        fused_sigmoid_focal_loss(x, labels, torch.tensor([1.0, 2.0]), 0.25)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        fused_sigmoid_focal_loss(x, labels, -1.0)
    with pytest.raises(ValueError, match="backend"):
        fused_sigmoid_focal_loss(x, labels, backend="cuda")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        fused_sigmoid_focal_loss(x, labels, backend="triton")


INTERPRETER_CHECK = textwrap.dedent("""
    import os, sys
    assert os.environ["TRITON_INTERPRET"] == "1"
    import torch, triton, triton.language as tl

    @triton.jit
    def _probe(p):
        tl.store(p, tl.load(p) + 1)
    probe = torch.zeros(1)
    try:
        _probe[(1,)](probe)
        assert probe.item() == 1
    except Exception as exc:
        print(f"Triton {triton.__version__} interpreter cannot run a kernel on CPU tensors: {exc!r}")
        sys.exit(77)

    import torch.nn.functional as F
    from torchvision.ops import sigmoid_focal_loss as tv_focal
    from minidet.losses import fused_sigmoid_focal_loss, sigmoid_focal_loss
    g = torch.Generator().manual_seed(0)
    for (B, A, C) in ((2, 37, 7), (1, 50, 80)):
        x = torch.randn(B, A, C, generator=g, dtype=torch.float64) * 4
        labels = torch.where(torch.rand(B, A, generator=g) < 0.3, torch.randint(0, C, (B, A), generator=g), -1)
        valid = torch.rand(B, A, generator=g) > 0.2
        levels = torch.randint(0, 3, (A,), generator=g)
        gamma = torch.tensor([1.5, 2.0, 2.5], dtype=torch.float64)
        onehot = F.one_hot(labels.clamp(min=0), C).double() * (labels >= 0)[..., None]
        w = torch.rand(B, A, generator=g, dtype=torch.float64)
        tv = tv_focal(x, onehot, 0.25, 2.0).sum(-1) * valid
        scalar = fused_sigmoid_focal_loss(x, labels, 2.0, 0.25, valid=valid, backend="triton")
        torch.testing.assert_close(scalar, tv, rtol=1e-12, atol=1e-12)
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5), (torch.bfloat16, 2e-2)):
            for one_pass in (True, False):
                xx = x.to(dtype).clone().requires_grad_(True)
                xr = xx.detach().double().requires_grad_(True)  # the reference on the same (rounded) logits
                rows = fused_sigmoid_focal_loss(xx, labels, gamma, 0.5 / gamma, levels, valid, backend="triton",
                                                one_pass=one_pass)
                (grad,) = torch.autograd.grad((rows * w).sum(), xx)
                r = sigmoid_focal_loss(xr, onehot, (0.5 / gamma)[levels][None, :, None],
                                       gamma[levels][None, :, None]).sum(-1) * valid
                (ref_grad,) = torch.autograd.grad((r * w).sum(), xr)
                torch.testing.assert_close(rows.double(), r.detach(), rtol=tol, atol=tol)
                torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol)
                assert grad.dtype == dtype
        # a strided levels tensor (every other element of a longer one): the kernel reads levels with
        # stride 1, so the wrapper must make it contiguous or gamma/alpha come from the wrong anchors
        strided = torch.stack([levels, torch.full_like(levels, 2)], 1).reshape(-1)[::2]
        assert strided.stride() == (2,) and torch.equal(strided, levels)
        rows = fused_sigmoid_focal_loss(x, labels, gamma, 0.5 / gamma, strided, valid, backend="triton")
        r = sigmoid_focal_loss(x, onehot, (0.5 / gamma)[levels][None, :, None], gamma[levels][None, :, None]).sum(-1) * valid
        torch.testing.assert_close(rows, r, rtol=1e-12, atol=1e-12)
    print("interpreter ok")
""")


def test_triton_kernel_under_interpreter_matches_float64_reference():
    pytest.importorskip("triton", reason="Triton is not installed")
    env = {**__import__("os").environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    run = subprocess.run([sys.executable, "-c", INTERPRETER_CHECK], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "interpreter ok" in run.stdout


def test_benchmark_smoke_runs_on_cpu_and_emits_json(capsys):
    out = bench_main(["--device", "cpu", "--size", "40x56", "--batch", "1", "--classes", "5", "--repeats", "1",
                      "--warmup", "0", "--methods", "fused,fused_recompute,fused_pfl,torchvision"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line) == out
    # 40x56: P3..P7 cells 5*7 + 3*4 + 2*2 + 1 + 1 = 53, times 9 anchors
    assert out["shape"] == [1, 477, 5] and out["fused_backend"] == "torch"
    assert set(out["methods"]) == {"fused", "fused_recompute", "fused_pfl", "torchvision"}
    assert all(m["max_err"] < 1e-5 and m["ms"] > 0 for m in out["methods"].values())


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("one_pass", [True, False])
def test_triton_on_cuda_matches_float64_reference(cuda_device, dtype, tol, one_pass):
    x, labels, valid, onehot = _case(B=3, A=1000, C=80, device=cuda_device)
    levels = (torch.arange(1000, device=cuda_device) * 5) // 1000
    gamma = torch.tensor([1.5, 1.8, 2.0, 2.2, 2.5], device=cuda_device)
    xr = x.to(dtype).double()  # reference on the same rounded logits
    w = torch.rand(labels.shape, dtype=torch.float64, device=cuda_device)
    per_elem = lambda z: sigmoid_focal_loss(z, onehot, (0.5 / gamma).double()[levels][None, :, None],
                                            gamma.double()[levels][None, :, None]).sum(-1) * valid
    ref_rows, ref_grad = _loss_and_grad(per_elem, xr, w)
    rows, grad = _loss_and_grad(lambda z: fused_sigmoid_focal_loss(
        z, labels, gamma, 0.5 / gamma, levels, valid, backend="triton", one_pass=one_pass), x.to(dtype), w)
    assert rows.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and grad.dtype == dtype
    torch.testing.assert_close(rows.double(), ref_rows, rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol)


@pytest.mark.cuda
def test_triton_on_cuda_needs_no_host_synchronisation(cuda_device):
    x, labels, valid, onehot = _case(B=2, A=500, C=80, dtype=torch.float32, device=cuda_device)
    levels = (torch.arange(500, device=cuda_device) * 5) // 500
    pos, x = labels >= 0, x.requires_grad_(True)
    for loss in (ProgressiveFocalLoss(fused=True), FocalLoss(fused=True)):
        loss(x, onehot.float(), pos, levels, 5)  # warm-up: compiles the kernel
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out, _ = loss(x, onehot.float(), pos, levels, 5)
            torch.autograd.grad(out.sum(), x)
        finally:
            torch.cuda.set_sync_debug_mode("default")
