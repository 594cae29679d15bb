"""The model zoo: every detector trained with the default recipe (``minidet train``'s), several seeds, and
snapshots evaluated along the way so that each run is also a learning curve in AP.

    python -m minidet.engine.zoo train --models retinanet fcos --seeds 0 1 2   # the default recipe
    python -m minidet.engine.zoo train --weights shapes-pretrained --results results/zoo-pretrained --runs runs/zoo-pretrained
    python -m minidet.engine.zoo table                                         # tables from results/zoo

Run folders (checkpoints, never committed) are ``<runs>/<model>/seed<k>/``; checkpoints every 200 iterations let a
killed run resume where it stopped. As soon as a run is trained and evaluated its small results land in
``<results>/<model>/seed<k>/``: ``metrics.json`` (final COCO metrics, the snapshot curve, seconds per training
iteration, inference milliseconds per image, parameter count, the recipe, the machine and the load it ran under)
and ``history.json`` (the training losses averaged over windows of 20 iterations). A run whose ``metrics.json``
exists is skipped, so one grid can span several sessions: commit after every finished run.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from minidet.engine.evaluate import evaluate_snapshots
from minidet.engine.experiment import MODELS, DataSpec, RunConfig, make_datasets, resolve_data, run
from minidet.engine.loader import build_loader
from minidet.engine.precision import autocast_dtype, cpu_has_native_bf16
from minidet.errors import ConfigError

ZOO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
HISTORY_WINDOW = 20


def default_recipe(model: str = "retinanet", iters: int | None = None, seed: int = 0) -> RunConfig:
    """The run configuration ``minidet train --model <model>`` uses with no other flag (``iters`` replaces its
    2600 iterations)."""
    from minidet.cli import DEFAULT_TRAIN  # the one place the default recipe is written down

    cfg = RunConfig(model=model, train=copy.deepcopy(DEFAULT_TRAIN))
    cfg.train.seed = seed
    if iters is not None:
        cfg.train.iters = iters
    return cfg


def snapshot_points(iters: int, count: int = 4) -> tuple[int, ...]:
    """``count - 1`` evenly spaced snapshot iterations before ``iters`` (``last.pt`` is the last point)."""
    return tuple(sorted({round(iters * k / count) for k in range(1, count)} - {0, iters}))


def compact_history(rows: list[dict[str, Any]], window: int = HISTORY_WINDOW) -> list[dict[str, Any]]:
    """Mean of every scalar of the per-iteration history over consecutive windows of ``window`` iterations
    (per-level lists are averaged element-wise), one row per window keyed by its last iteration."""
    out = []
    for start in range(0, len(rows), window):
        chunk = rows[start:start + window]
        row: dict[str, Any] = {"iter": chunk[-1]["iter"]}
        for key, value in chunk[-1].items():
            if key == "iter":
                continue
            vals = [r[key] for r in chunk if key in r]
            if isinstance(value, (int, float)):
                row[key] = round(statistics.fmean(float(v) for v in vals), 5)
            elif isinstance(value, list) and all(isinstance(v, list) and len(v) == len(value) for v in vals):
                row[key] = [round(statistics.fmean(float(v[j]) for v in vals), 5) for j in range(len(value))]
        out.append(row)
    return out


def inference_ms_per_image(model: torch.nn.Module, dataset, n: int = 48, device: str = "cpu") -> float:
    """Median wall time of one forward pass at batch 1 (eval mode, post-processing included), in ms, over ``n``
    validation images after 4 warm-up passes."""
    from minidet.data import collate_detection

    model.eval()
    times = []
    with torch.no_grad():
        for i in range(n + 4):
            batch = collate_detection([dataset[i % len(dataset)]]).to(device)
            t0 = time.perf_counter()
            model(batch.images, image_sizes=batch.image_sizes)
            if i >= 4:
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def machine() -> dict[str, Any]:
    """What the timings ran on: CPU model, whether it computes bf16 natively (then the default recipe trains
    under bf16 autocast, else in fp32), torch threads, torch version, and the 1-minute load average."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_native_bf16": cpu_has_native_bf16(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def run_one(model: str, seed: int, iters: int, runs_root: Path, results_root: Path, spec: DataSpec,
            weights: str | None = None, device: str = "cpu", snapshots: int = 4, command: str = "",
            amp: bool = True, cfg: RunConfig | None = None, name: str | None = None) -> dict[str, Any]:
    """Train (or resume) and evaluate one zoo run and write its results; returns the ``metrics.json`` record.
    A run whose record exists is read back instead. ``amp=False`` trains in fp32 where the default recipe
    would use bf16 autocast (the record's ``precision`` says which one ran).

    ``cfg`` replaces the default recipe of ``model`` (an ablation variant of it: :mod:`minidet.engine.ablation`
    passes one, with its seed, weights and snapshots set here as for a zoo run); ``name`` names the run's folders
    (``<runs_root>/<name>/seed<k>``, ``<results_root>/<name>/seed<k>``; default ``model``)."""
    name = name or model
    res_dir = results_root / name / f"seed{seed}"
    if (res_dir / "metrics.json").is_file():
        return json.loads((res_dir / "metrics.json").read_text())
    cfg = default_recipe(model, iters, seed) if cfg is None else copy.deepcopy(cfg)
    cfg.train.seed = seed
    cfg.weights = weights
    cfg.train.amp = amp
    cfg.train.snapshot_iters = snapshot_points(cfg.train.iters, snapshots)
    out = runs_root / name / f"seed{seed}"
    load_before = machine()
    result = run(spec, cfg, out, device=device, progress=True)
    steps = result["steps_this_call"]
    _, val = make_datasets(spec, cfg.size)
    loader = build_loader(val, cfg.batch_size, train=False, num_workers=cfg.workers)
    curve = [{"iter": it, **{k: round(m[k], 5) for k in ZOO_METRICS}}
             for it, m in evaluate_snapshots(out, loader, device, last_metrics=result["metrics"])]
    net = result["model"]
    record = {
        "model": cfg.model, "variant": name, "seed": seed, "iters": cfg.train.iters, "weights": weights,
        "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
            autocast_dtype(device, cfg.train.amp, cfg.train.amp_dtype)],
        **{k: round(result["metrics"][k], 5) for k in ZOO_METRICS},
        "curve": curve,
        # a resumed run times only the steps of its last call
        "seconds_per_iter": round(result["train_seconds"] / steps, 4) if steps else None,
        "timed_steps": steps,
        "infer_ms_per_image": round(inference_ms_per_image(net, val, device=device), 2),
        "params": sum(p.numel() for p in net.parameters()),
        "recipe": {**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "train"},
                   "train": dataclasses.asdict(cfg.train)},
        "machine_at_start": load_before, "machine_at_end": machine(),
        "command": command, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record = json.loads(json.dumps(record))  # tuples as lists: the record equals what a later read gives back
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "history.json").write_text(json.dumps(compact_history(result["history"].rows)))
    (res_dir / "metrics.json").write_text(json.dumps(record, indent=1))
    print(f"zoo: {model} seed {seed}: AP {record['AP']:.3f} -> {res_dir / 'metrics.json'}", flush=True)
    return record


def load_results(results_root: str | Path = "results/zoo") -> dict[str, list[dict[str, Any]]]:
    """``{model: [metrics.json record per seed]}`` of every finished run under ``results_root``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(results_root).glob("*/seed*/metrics.json")):
        rec = json.loads(path.read_text())
        out.setdefault(rec["model"], []).append(rec)
    return out


def _mean_std(xs: list[float]) -> str:
    return f"{100 * statistics.fmean(xs):.1f} ± {100 * statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{100 * xs[0]:.1f}"


def zoo_table(results_root: str | Path = "results/zoo", models: tuple[str, ...] | None = None) -> str:
    """Markdown table of the zoo: per model the seeds, AP ... APl as mean ± sample std (in %), seconds per training
    iteration, inference ms per image and parameters; every number read from ``results_root`` (only ``models``,
    where given)."""
    lines = ["| model | iters | seeds | " + " | ".join(ZOO_METRICS) + " | s / train iter | infer ms / image | params (M) |",
             "|---" * (len(ZOO_METRICS) + 6) + "|"]
    res = load_results(results_root)
    for model in [m for m in MODELS if m in res and (models is None or m in models)]:
        recs = res[model]
        cells = [_mean_std([r[k] for r in recs]) for k in ZOO_METRICS]
        spi = [r["seconds_per_iter"] for r in recs if r["seconds_per_iter"]]
        lines.append(f"| {model} | {', '.join(sorted({str(r['iters']) for r in recs}))} | {len(recs)} | " + " | ".join(cells)
                     + f" | {statistics.median(spi):.2f} | {statistics.median(r['infer_ms_per_image'] for r in recs):.0f}"
                     + f" | {recs[0]['params'] / 1e6:.2f} |")
    return "\n".join(lines)


def curve_table(results_root: str | Path = "results/zoo") -> str:
    """Markdown table of AP (in %) at every snapshot iteration, mean over seeds, one row per model."""
    res = load_results(results_root)
    its = sorted({c["iter"] for recs in res.values() for r in recs for c in r["curve"]})
    lines = ["| model | seeds | " + " | ".join(f"AP @ {i}" for i in its) + " |", "|---" * (len(its) + 2) + "|"]
    for model in [m for m in MODELS if m in res]:
        recs = res[model]
        cells = []
        for i in its:
            vals = [c["AP"] for r in recs for c in r["curve"] if c["iter"] == i]
            cells.append(f"{100 * statistics.fmean(vals):.1f}" if vals else "")
        lines.append(f"| {model} | {len(recs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(results_root: str | Path = "results/zoo", out: str | Path = "results/zoo/curves.png") -> Path:
    """Draw :func:`minidet.viz.training.plot_zoo_curves` of ``results_root`` into ``out`` (PNG, 100 dpi)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) stays as it is

    from minidet.viz.training import plot_zoo_curves

    res = load_results(results_root)
    if not res:
        raise ConfigError(f"no finished zoo run under {results_root} (no */seed*/metrics.json)")
    fig = Figure(figsize=(7.5, 4.5))
    plot_zoo_curves({m: res[m] for m in MODELS if m in res}, ax=fig.subplots())
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="python -m minidet.engine.zoo", formatter_class=fmt)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train and evaluate the missing runs", formatter_class=fmt)
    t.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--iters", type=int, default=None, help="training iterations (default: the default recipe's)")
    t.add_argument("--snapshots", type=int, default=4, help="curve points per run (evenly spaced, the last at --iters)")
    t.add_argument("--weights", default=None, help="backbone weights (e.g. shapes-pretrained); default: from scratch")
    t.add_argument("--runs", default="runs/zoo", help="run folders (checkpoints)")
    t.add_argument("--results", default="results/zoo", help="where each finished run's metrics.json / history.json go")
    t.add_argument("--data-root", default="data/shapes")
    t.add_argument("--device", default="cpu")
    t.add_argument("--no-amp", dest="amp", action="store_false",
                   help="train in fp32 where the default recipe uses bf16 autocast (a CPU with native bf16, CUDA)")
    tb = sub.add_parser("table", help="print the zoo and curve tables from the results")
    tb.add_argument("--results", default="results/zoo")
    pl = sub.add_parser("plot", help="draw the AP curves of the results (the book's zoo figure)", formatter_class=fmt)
    pl.add_argument("--results", default="results/zoo")
    pl.add_argument("--out", default="results/zoo/curves.png")
    args = p.parse_args(argv)
    if args.cmd == "table":
        print(zoo_table(args.results), "\n", curve_table(args.results), sep="\n")
        return
    if args.cmd == "plot":
        print(f"wrote {plot_curves(args.results, args.out)}")
        return
    spec = resolve_data("shapes", args.data_root)
    for model in args.models:
        for seed in args.seeds:
            run_one(model, seed, args.iters or default_recipe(model).train.iters, Path(args.runs), Path(args.results), spec,
                    args.weights, args.device, args.snapshots, command="python -m minidet.engine.zoo " + " ".join(argv),
                    amp=args.amp)


if __name__ == "__main__":
    main()
