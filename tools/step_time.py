"""Median seconds of one training step of the default tiny RetinaNet (batch 8, 256 px, channels_last, AdamW), on a
fixed synthetic batch: a machine-speed check for the default recipe (2600 such steps), in fp32 and, with
``--precisions fp32 bf16``, under bf16 autocast too (alternating, so a change of load hits both).

    python tools/step_time.py
    python tools/step_time.py --precisions fp32 bf16 --threads 1 --out results/perf/bf16_vs_fp32_avx512_xeon.json

The second form is how minidet decides that an AVX512 CPU without AVX512-BF16 is no bf16 machine
(:func:`minidet.engine.precision.cpu_has_native_bf16`): there bf16 autocast makes the step slower.
"""
import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import torch

from minidet.engine.precision import NATIVE_BF16_FLAGS, cpu_flags, cpu_has_native_bf16, guard_narrow_strided_convs
from minidet.engine.zoo import machine
from minidet.models import build_retinanet


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "bf16"))
    p.add_argument("--rounds", type=int, default=2, help="alternations of the precisions")
    p.add_argument("--steps", type=int, default=6, help="steps per round (the first is not timed)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="also write the medians and the machine to this json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m = build_retinanet(num_classes=6, backbone="tiny", octave_base_scale=2.0).to(memory_format=torch.channels_last)
    guard_narrow_strided_convs(m)  # as the trainer does under CPU bf16
    x = torch.rand(8, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    tg = [{"boxes": torch.tensor([[10., 10, 80, 90], [100, 120, 200, 220]]), "labels": torch.tensor([1, 2])} for _ in range(8)]
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    times: dict[str, list[float]] = {k: [] for k in args.precisions}
    for _ in range(args.rounds):
        for mode in args.precisions:
            for i in range(args.steps):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    out = m(x, tg)
                    loss = sum(v for k, v in out.items() if k.startswith("loss_"))
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i:
                    times[mode].append(time.perf_counter() - t)
    medians = {k: round(statistics.median(v), 3) for k, v in times.items()}
    for k, v in medians.items():
        print(f"{k}: median step {v} s")
    if args.out:
        flags = cpu_flags() or frozenset()
        rec = {"median_step_s": medians, "steps_timed": {k: len(v) for k, v in times.items()},
               "bf16_flags": sorted(NATIVE_BF16_FLAGS & flags), "avx512f": "avx512f" in flags,
               "onednn_says_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
               "cpu_has_native_bf16": cpu_has_native_bf16(), "machine": machine(),
               "command": "python tools/step_time.py " + " ".join(__import__("sys").argv[1:]),
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
