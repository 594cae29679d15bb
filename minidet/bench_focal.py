"""Time the fused focal loss (forward + backward) against torchvision and a reference compiled with ``torch.compile``.

    python -m minidet.bench_focal --device cuda                    # COCO-like: batch 8, 800x1333, 80 classes
    python -m minidet.bench_focal --device cpu --size 64 --batch 1  # smoke run with the PyTorch fallback

The logits ``(B, A, C)`` have ``A = sum over P3-P7 (strides 8..128) of ceil(H/s) * ceil(W/s) * anchors``
(200,700 per 800x1333 image with 9 anchors). 1 % of the anchors are positives of a random class and 1 %
are ignored. Every method computes the same scalar, the focal loss summed over classes and valid
anchors, and its gradient with respect to the logits (``torch.autograd.grad``):

- ``fused``: :func:`minidet.losses.fused_sigmoid_focal_loss` (Triton on CUDA), gradient written in the
  forward pass; ``fused_recompute``: gradient recomputed in backward; ``fused_pfl``: per-level
  ``gamma``/``alpha`` tensors as Progressive Focal Loss uses them.
- ``torchvision``: ``torchvision.ops.sigmoid_focal_loss`` on one-hot targets, with autograd. The one-hot
  targets are built once, outside the timing (a detector builds them every step).
- ``compiled``: :func:`minidet.losses.sigmoid_focal_loss` on one-hot targets under ``torch.compile``.

Effective bandwidth is the least memory traffic the task needs (read the logits, write the gradient,
read the labels and the ignore mask) divided by the median time, reported beside the measured
bandwidth of a copy of the logits (``torch.empty_like(x).copy_(x)``: read + write). A single pass over
the logits reaches at most the copy bandwidth. ``max_err`` is each method's largest gradient error
against torchvision's op in float64. The last line printed is one JSON object.

This is a script, not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss as tv_focal

from minidet.losses import fused_sigmoid_focal_loss, level_index, sigmoid_focal_loss
from minidet.losses.focal_fused import use_triton

METHODS = ("fused", "fused_recompute", "fused_pfl", "torchvision", "compiled")
STRIDES = (8, 16, 32, 64, 128)


def level_sizes(height: int, width: int, anchors: int, strides: tuple[int, ...] = STRIDES) -> list[int]:
    """Anchors per pyramid level of an ``height x width`` image: ``ceil(H/s) * ceil(W/s) * anchors``."""
    return [math.ceil(height / s) * math.ceil(width / s) * anchors for s in strides]


def _median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def copy_seconds(numel: int, dtype: torch.dtype, device: torch.device, warmup: int, repeats: int) -> float:
    """Median time of ``torch.empty_like(x).copy_(x)`` for ``numel`` elements: the bandwidth yardstick."""
    src = torch.empty(numel, dtype=dtype, device=device)
    return _median_seconds(lambda: torch.empty_like(src).copy_(src), device, warmup, repeats)


def _reference_sum(x: Tensor, onehot: Tensor, valid: Tensor) -> Tensor:
    return (sigmoid_focal_loss(x, onehot, 0.25, 2.0).sum(-1) * valid).sum()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m minidet.bench_focal", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", default="800x1333", help="HxW of the padded input, or one number for a square")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--anchors", type=int, default=9, help="anchors per feature-map cell")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    methods = args.methods.split(",")
    if unknown := set(methods) - set(METHODS):
        p.error(f"--methods: unknown {sorted(unknown)}; choose from {METHODS}")
    height, width = (int(v) for v in (args.size.split("x") if "x" in args.size else (args.size, args.size)))
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    sizes = level_sizes(height, width, args.anchors)
    B, A, C = args.batch, sum(sizes), args.classes
    torch.manual_seed(0)
    x = (torch.randn(B, A, C, device=device) * 2).to(dtype).requires_grad_(True)
    labels = torch.where(torch.rand(B, A, device=device) < 0.01, torch.randint(0, C, (B, A), device=device), -1)
    valid = torch.rand(B, A, device=device) >= 0.01
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), C).to(dtype) * (labels >= 0)[..., None].to(dtype)
    levels = level_index(sizes, device)
    gamma_l = torch.linspace(1.5, 2.5, len(sizes), device=device)  # what PFL would hand over, one per level
    alpha_l = 0.5 / gamma_l
    compiled = torch.compile(_reference_sum) if "compiled" in methods else None

    losses: dict[str, Callable[[], Tensor]] = {
        "fused": lambda: fused_sigmoid_focal_loss(x, labels, 2.0, 0.25, valid=valid).sum(),
        "fused_recompute": lambda: fused_sigmoid_focal_loss(x, labels, 2.0, 0.25, valid=valid, one_pass=False).sum(),
        "fused_pfl": lambda: fused_sigmoid_focal_loss(x, labels, gamma_l, alpha_l, levels, valid).sum(),
        "torchvision": lambda: (tv_focal(x, onehot, 0.25, 2.0).sum(-1) * valid).sum(),
        "compiled": lambda: compiled(x, onehot, valid),
    }

    def grad_of(name: str) -> Tensor:
        return torch.autograd.grad(losses[name](), x)[0]

    x64 = x.detach().double().requires_grad_(True)
    ref_grad = torch.autograd.grad((tv_focal(x64, onehot.double(), 0.25, 2.0).sum(-1) * valid).sum(), x64)[0]
    pfl_ref = x.detach().double().requires_grad_(True)
    g, a = gamma_l.double()[levels][None, :, None], alpha_l.double()[levels][None, :, None]
    pfl_loss = (sigmoid_focal_loss(pfl_ref, onehot.double(), a, g).sum(-1) * valid).sum()
    pfl_grad = torch.autograd.grad(pfl_loss, pfl_ref)[0]
    del x64, pfl_ref

    copy_s = copy_seconds(B * A * C, dtype, device, args.warmup, args.repeats)
    copy_gbps = 2 * B * A * C * x.element_size() / copy_s / 1e9
    min_bytes = 2 * B * A * C * x.element_size() + labels.numel() * labels.element_size() + valid.numel()

    results = {}
    for name in methods:
        err = (grad_of(name).double() - (pfl_grad if name == "fused_pfl" else ref_grad)).abs().max().item()
        seconds = _median_seconds(lambda n=name: grad_of(n), device, args.warmup, args.repeats)
        gbps = min_bytes / seconds / 1e9
        results[name] = {"ms": round(seconds * 1e3, 3), "gbps": round(gbps, 1),
                         "frac_copy": round(gbps / copy_gbps, 3), "max_err": err}

    print(f"focal loss forward + backward, logits ({B}, {A}, {C}) {args.dtype} on {device}, "
          f"median of {args.repeats}; copy bandwidth {copy_gbps:.1f} GB/s ({copy_s * 1e3:.3f} ms)")
    print(f"{'method':<16} {'ms':>9} {'GB/s':>9} {'% copy':>7} {'max_err':>9}")
    for name, r in results.items():
        print(f"{name:<16} {r['ms']:>9.3f} {r['gbps']:>9.1f} {100 * r['frac_copy']:>6.1f}% {r['max_err']:>9.2e}")
    out = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "fused_backend": "triton" if use_triton("auto", device) else "torch", "dtype": args.dtype,
           "shape": [B, A, C], "min_bytes": min_bytes, "copy_gbps": round(copy_gbps, 1),
           "torch": torch.__version__, "methods": results}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
