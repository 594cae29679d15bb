"""Time a full training step and inference of minidet against torchvision on the same network.

    python -m minidet.bench --model retinanet --device cpu --size 256 --batch 2
    python -m minidet.bench --model fcos --device cuda --size 800 --batch 8 --amp

Both sides are the same randomly initialised ResNet-50-FPN detector: torchvision's
``retinanet_resnet50_fpn`` / ``fcos_resnet50_fpn`` and minidet's model of the same layout
(:func:`~minidet.models.build_retinanet_like_torchvision`, :func:`~minidet.models.build_fcos_like_torchvision`:
same parameters, same anchors or points, same inference settings), with trainable batch norm, the same
images, ground truths and SGD. torchvision's internal resize is set to the input size (a no-op).

A training step is forward, loss, backward and the optimiser step; inference is a forward pass under
``torch.inference_mode`` ending in detections. Runs alternate (minidet, torchvision, minidet, ...) so that
machine noise hits both alike; medians are reported. Peak memory of one step of each: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the rise of the resident set (``VmHWM`` after the step, reset
through ``/proc/self/clear_refs``, minus ``VmRSS`` before, after glibc's ``malloc_trim`` returned freed
pages), or ``null`` where Linux and glibc do not offer that.

The last line printed is one JSON object: ``model``, ``device``, ``minidet_s``, ``torchvision_s`` (median
seconds per training step), ``speedup = torchvision_s / minidet_s``, the same for inference
(``*_infer_s``, ``infer_speedup``) and peak memory in MiB (``*_train_peak_mib``, ``*_infer_peak_mib``).

This is a script, not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import fcos_resnet50_fpn, retinanet_resnet50_fpn

from minidet.models import build_fcos_like_torchvision, build_retinanet_like_torchvision

PAIRS = {"retinanet": (build_retinanet_like_torchvision, retinanet_resnet50_fpn),
         "fcos": (build_fcos_like_torchvision, fcos_resnet50_fpn)}


def make_batch(batch: int, size: int, num_classes: int, objects: int, seed: int = 0):
    """``batch`` random images ``(B, 3, size, size)`` in [0, 1] and ``objects`` random boxes per image."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    targets = []
    for _ in range(batch):
        xy = torch.rand(objects, 2, generator=g) * size * 0.7
        wh = torch.rand(objects, 2, generator=g) * size * 0.3 + 8
        targets.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=size)], 1),
                        "labels": torch.randint(0, num_classes, (objects,), generator=g)})
    return images, targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def peak_memory_mib(fn: Callable[[], None], device: torch.device) -> float | None:
    """Peak memory of one call of ``fn`` in MiB (see the module docstring); ``None`` where not measurable."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so the step's own show as a rise
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        before = _proc_kib("VmRSS")
        fn()
        return (_proc_kib("VmHWM") - before) / 1024
    except (OSError, AttributeError):  # not Linux with glibc, or no permission
        return None


def build_pair(name: str, num_classes: int, size: int, device: torch.device, channels_last: bool, seed: int = 0):
    """minidet's and torchvision's model of the same layout, each seeded alike."""
    ours_fn, theirs_fn = PAIRS[name]
    torch.manual_seed(seed)
    ours = ours_fn(num_classes).to(device)
    torch.manual_seed(seed)
    theirs = theirs_fn(weights=None, weights_backbone=None, num_classes=num_classes, min_size=size, max_size=size).to(device)
    if channels_last:
        ours, theirs = ours.to(memory_format=torch.channels_last), theirs.to(memory_format=torch.channels_last)
    return ours, theirs


def loss_only_steps(name: str, ours, theirs, images: torch.Tensor, image_list: list[torch.Tensor], targets: list[dict]):
    """Two callables that time assignment + losses + backward alone, on head outputs computed once.

    Each side's network runs once (no gradient); its head outputs become leaf tensors with
    ``requires_grad``, so a call is exactly the loss path: minidet's batched assignment and losses
    (:meth:`loss` with ``dense_outputs`` returning the fixed outputs) against torchvision's
    ``compute_loss`` (its per-image ``Matcher`` loop), each followed by ``backward`` into those leaves."""
    ours.train()
    theirs.train()
    with torch.no_grad():
        fixed = ours.dense_outputs(images)
    n_out = 3 if name == "fcos" else 2  # (cls, box[, centerness]) come from the network; the rest are fixed grids
    leaves = tuple(t.detach().float().requires_grad_(True) for t in fixed[:n_out]) + tuple(fixed[n_out:])
    sizes = torch.tensor([images.shape[-2:]] * images.shape[0], device=images.device)

    def ours_loss() -> None:
        ours.dense_outputs = lambda _images: leaves  # an instance attribute: the class's method is untouched
        try:
            out = ours.loss(images, targets, sizes)
        finally:
            del ours.dense_outputs
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()

    with torch.no_grad():
        image_batch, tv_targets = theirs.transform(image_list, [dict(t) for t in targets])
        feats = list(theirs.backbone(image_batch.tensors).values())
        head = {k: v.detach().requires_grad_(True) for k, v in theirs.head(feats).items()}
        anchors = theirs.anchor_generator(image_batch, feats)
    num_per_level = [f.shape[-2] * f.shape[-1] for f in feats]

    def theirs_loss() -> None:
        if name == "fcos":
            losses = theirs.compute_loss(tv_targets, head, anchors, num_per_level)
        else:
            losses = theirs.compute_loss(tv_targets, head, anchors)
        sum(losses.values()).backward()

    return ours_loss, theirs_loss


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m minidet.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="retinanet", choices=tuple(PAIRS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=256, help="square input side in pixels (a multiple of 128 keeps both on the same strides)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=91, help="number of classes of both models (torchvision's default: 91)")
    p.add_argument("--objects", type=int, default=8, help="ground truths per image")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast around both forward passes (meant for CUDA)")
    p.add_argument("--channels-last", action="store_true", help="NHWC models and images, both sides")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    ours, theirs = build_pair(args.model, args.classes, args.size, device, args.channels_last)
    images, targets = make_batch(args.batch, args.size, args.classes, args.objects)
    images = images.to(device)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    image_list = list(images)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=1e-4, momentum=0.9)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)

    def train_step(model, call, opt) -> None:
        model.train()
        with autocast():
            out = call()
        # minidet's dict also holds per-level statistics; torchvision's holds only losses
        loss = sum(v for k, v in out.items() if model is theirs or k.startswith("loss_"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer(model, call) -> None:
        model.eval()
        with torch.inference_mode(), autocast():
            call()

    ours_loss, theirs_loss = loss_only_steps(args.model, ours, theirs, images, image_list, targets)
    steps = {
        "ours": lambda: train_step(ours, lambda: ours(images, targets), opt_ours),
        "theirs": lambda: train_step(theirs, lambda: theirs(image_list, targets), opt_theirs),
        "ours_infer": lambda: infer(ours, lambda: ours(images)),
        "theirs_infer": lambda: infer(theirs, lambda: theirs(image_list)),
        "ours_loss": ours_loss, "theirs_loss": theirs_loss,
    }

    def timed(fn) -> float:
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t

    times: dict[str, list[float]] = {k: [] for k in steps}
    for pair in (("ours", "theirs"), ("ours_loss", "theirs_loss"), ("ours_infer", "theirs_infer")):
        for i in range(args.warmup + args.repeats):
            for k in pair:  # alternate: ours, theirs, ours, theirs ...
                t = timed(steps[k])
                if i >= args.warmup:
                    times[k].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    peak = {k: peak_memory_mib(fn, device) for k, fn in steps.items()}

    def mib(x: float | None) -> float | None:
        return None if x is None else round(x, 1)

    result = {
        "model": args.model, "device": str(device), "size": args.size, "batch": args.batch, "classes": args.classes,
        "amp": args.amp, "channels_last": args.channels_last,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "machine": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "params": sum(p.numel() for p in ours.parameters()), "torchvision_params": sum(p.numel() for p in theirs.parameters()),
        "minidet_s": round(med["ours"], 4), "torchvision_s": round(med["theirs"], 4),
        "speedup": round(med["theirs"] / med["ours"], 3),
        "minidet_loss_s": round(med["ours_loss"], 4), "torchvision_loss_s": round(med["theirs_loss"], 4),
        "loss_speedup": round(med["theirs_loss"] / med["ours_loss"], 3),
        "minidet_infer_s": round(med["ours_infer"], 4), "torchvision_infer_s": round(med["theirs_infer"], 4),
        "infer_speedup": round(med["theirs_infer"] / med["ours_infer"], 3),
        "minidet_train_peak_mib": mib(peak["ours"]), "torchvision_train_peak_mib": mib(peak["theirs"]),
        "minidet_infer_peak_mib": mib(peak["ours_infer"]), "torchvision_infer_peak_mib": mib(peak["theirs_infer"]),
    }
    kind = "CUDA max_memory_allocated" if device.type == "cuda" else "CPU resident-set rise"

    def show(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0f} MiB"

    print(f"{args.model}, {device}, batch {args.batch} x {args.size} px, amp={args.amp}, medians of {args.repeats}:")
    for label, a, b in (("training step", "ours", "theirs"), ("loss only    ", "ours_loss", "theirs_loss"),
                        ("inference    ", "ours_infer", "theirs_infer")):
        print(f"  {label}: minidet {med[a]:.4f} s, torchvision {med[b]:.4f} s (ratio {med[b] / med[a]:.2f}); "
              f"peak memory ({kind}) {show(peak[a])} vs {show(peak[b])}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
