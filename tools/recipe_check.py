"""The default recipe as a newcomer runs it, with and without bf16 autocast: wall time and COCO AP.

    python tools/recipe_check.py --seeds 0 1          # 4 runs, interleaved: bf16 s0, fp32 s0, bf16 s1, fp32 s1

Each run is ``minidet train --seed <k> [--no-amp]`` in its own empty folder (so its wall time includes
generating the shapes data, training and evaluating, as in the README's table), timed from outside, on an
otherwise idle machine. Each finished run is written at once to ``results/recipe/<precision>-seed<k>.json``
(and skipped when that file exists); ``results/recipe/table.json`` holds the README table
(``<!-- table:results/recipe/table.json -->``, :mod:`minidet.engine.report`). On a CPU without native bf16
the "bf16" run would train in fp32 as well (the precision rule), so the script stops there.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from minidet.engine.precision import cpu_has_native_bf16

RESULTS = Path("results/recipe")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run_one(precision: str, seed: int, keep: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"recipe-{precision}-s{seed}-"))
    cmd = ["minidet", "train", "--seed", str(seed)] + (["--no-amp"] if precision == "fp32" else [])
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {work} (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = work / "runs" / "retinanet"
    if not (out / "metrics.json").is_file():  # the CLI's default --out
        out = next(p.parent for p in work.rglob("metrics.json"))
    metrics = json.loads((out / "metrics.json").read_text())
    summary = json.loads((out / "run.json").read_text())
    first = next((ln for ln in proc.stdout.splitlines() if ln.startswith("minidet: precision")), "")
    rec = {"precision": precision, "seed": seed, "wall_s": round(wall, 1), "train_s": summary["train_seconds"],
           "eval_s": summary["eval_seconds"], "it_per_s": summary["it_per_s"], "iterations": summary["iterations"],
           **{k: round(metrics[k], 4) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")},
           "printed_precision": first, "command": " ".join(cmd) + " (in an empty folder)",
           "machine": f"{cpu_name()}, {os.cpu_count()} cores, native bf16: {cpu_has_native_bf16()}",
           "torch": torch.__version__, "load_1min_start": round(load0, 2), "load_1min_end": round(os.getloadavg()[0], 2),
           "date": time.strftime("%Y-%m-%d")}
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return rec


def table(recs: list[dict]) -> str:
    """Per-precision mean (and per-seed values) of wall time and AP, and the fp32/bf16 wall-time ratio."""
    lines = ["| precision | seeds | wall time (min) | training (s) | it/s | AP | AP50 | AP75 | per-seed AP |", "|---|---|---|---|---|---|---|---|---|"]
    by = {p: sorted((r for r in recs if r["precision"] == p), key=lambda r: r["seed"]) for p in ("bf16", "fp32")}
    for p, rs in by.items():
        if not rs:
            continue
        m = lambda k: statistics.mean(r[k] for r in rs)
        ap = " / ".join(f"{100 * r['AP']:.1f}" for r in rs)
        lines.append(f"| {p} | {len(rs)} | {m('wall_s') / 60:.2f} | {m('train_s'):.0f} | {m('it_per_s'):.2f} | "
                     f"{100 * m('AP'):.1f} | {100 * m('AP50'):.1f} | {100 * m('AP75'):.1f} | {ap} |")
    if by["bf16"] and by["fp32"]:
        ratio = statistics.mean(r["wall_s"] for r in by["fp32"]) / statistics.mean(r["wall_s"] for r in by["bf16"])
        lines.append(f"\nfp32 / bf16 wall time: {ratio:.2f}x. Machine: {recs[0]['machine']}, torch {recs[0]['torch']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/recipe_check.py")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--precisions", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--keep", action="store_true", help="keep each run's folder (data, checkpoints) in /tmp")
    args = p.parse_args(argv)
    if "bf16" in args.precisions and not cpu_has_native_bf16():
        raise SystemExit("this CPU has no native bf16: the default recipe trains in fp32 here, so there is nothing to compare")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for precision in args.precisions:
            path = RESULTS / f"{precision}-seed{seed}.json"
            if path.is_file():
                print(f"{path} exists: skipped")
                continue
            rec = run_one(precision, seed, args.keep)
            path.write_text(json.dumps(rec, indent=1) + "\n")
            print(f"{precision} seed {seed}: {rec['wall_s'] / 60:.2f} min, AP {rec['AP']:.3f}, AP50 {rec['AP50']:.3f} -> {path}", flush=True)
    recs = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("*-seed*.json"))]
    cmd = "python tools/recipe_check.py --seeds " + " ".join(map(str, sorted({r["seed"] for r in recs})))
    (RESULTS / "table.json").write_text(json.dumps({"command": cmd, "table": table(recs)}, indent=1) + "\n")
    print(table(recs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
