"""Time one full training step of minidet against torchvision on the same network.

    python -m minidet.bench --model retinanet --device cpu --size 256 --batch 2

Both detectors use a randomly initialised ResNet-50-FPN (P3-P7, 256 channels, trainable batch norm),
the paper's head (4 convs, 9 anchors per cell), the same images, the same ground truths and SGD. Runs
alternate (minidet, torchvision, minidet, ...) so that machine noise hits both alike; the medians are
reported. The last line printed is one JSON object with ``minidet_s``, ``torchvision_s`` (median seconds
per training step) and ``speedup = torchvision_s / minidet_s``, plus inference medians.

This is a script, not a test: timings depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torchvision
from torchvision.models.detection import retinanet_resnet50_fpn

from minidet.models import build_retinanet


def make_batch(batch: int, size: int, num_classes: int, objects: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, size, size, generator=g)
    targets = []
    for _ in range(batch):
        xy = torch.rand(objects, 2, generator=g) * size * 0.7
        wh = torch.rand(objects, 2, generator=g) * size * 0.3 + 8
        targets.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=size)], 1),
                        "labels": torch.randint(1, num_classes, (objects,), generator=g)})
    return images, targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m minidet.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="retinanet", choices=("retinanet",))
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=91, help="number of classes of both models (torchvision's default: 91)")
    p.add_argument("--objects", type=int, default=8, help="ground truths per image")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    ours = build_retinanet(args.classes, backbone="resnet50").to(device)
    theirs = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=args.classes,
                                    min_size=args.size, max_size=args.size).to(device)
    images, targets = make_batch(args.batch, args.size, args.classes, args.objects)
    images = images.to(device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    # minidet labels are 0..C-1; torchvision's class 0 is background-free too for RetinaNet (sigmoid), same ids.
    opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-4, momentum=0.9)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=1e-4, momentum=0.9)

    def step_ours():
        out = ours(images, targets)
        loss = out["loss_cls"] + out["loss_box"]
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        opt_ours.step()

    def step_theirs():
        out = theirs(list(images), targets)
        loss = sum(out.values())
        opt_theirs.zero_grad(set_to_none=True)
        loss.backward()
        opt_theirs.step()

    def infer_ours():
        with torch.no_grad():
            ours(images)

    def infer_theirs():
        with torch.no_grad():
            theirs(list(images))

    def timed(fn) -> float:
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t

    times: dict[str, list[float]] = {"ours": [], "theirs": [], "ours_inf": [], "theirs_inf": []}
    ours.train(), theirs.train()
    for i in range(args.warmup + args.repeats):
        a, b = timed(step_ours), timed(step_theirs)
        if i >= args.warmup:
            times["ours"].append(a)
            times["theirs"].append(b)
    ours.eval(), theirs.eval()
    for i in range(args.warmup + args.repeats):
        a, b = timed(infer_ours), timed(infer_theirs)
        if i >= args.warmup:
            times["ours_inf"].append(a)
            times["theirs_inf"].append(b)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": args.model, "device": str(device), "size": args.size, "batch": args.batch, "classes": args.classes,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "machine": platform.processor() or platform.machine(),
        "minidet_infer_s": round(med["ours_inf"], 4), "torchvision_infer_s": round(med["theirs_inf"], 4),
        "infer_speedup": round(med["theirs_inf"] / med["ours_inf"], 3),
        "minidet_s": round(med["ours"], 4), "torchvision_s": round(med["theirs"], 4),
        "speedup": round(med["theirs"] / med["ours"], 3),
    }
    print(f"training step (median of {args.repeats}): minidet {med['ours']:.3f} s, torchvision {med['theirs']:.3f} s")
    print(f"inference     (median of {args.repeats}): minidet {med['ours_inf']:.3f} s, torchvision {med['theirs_inf']:.3f} s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
