"""Ablation grids: several variants x several seeds, each a full ``run``, summarised as mean +- spread.

    python -m minidet.engine.ablation umop --iters 800 --seeds 0 1 --out runs/umop
    python -m minidet.engine.ablation dw --iters 800 --seeds 0 1 --out runs/dw
    python -m minidet.engine.ablation libra --iters 600 --seeds 0 1 --out runs/libra
    python -m minidet.engine.ablation mimic --iters 500 --seeds 0 1 --out runs/mimicdet
    python -m minidet.engine.ablation crowd --iters 400 --seeds 0 1 --out runs/crowd --results results/crowd/retinanet_128px_400it.json
    python -m minidet.engine.ablation umop --recipe default --seeds 0 1 2 --only "retinanet FL" "retinanet PFL"

With ``--recipe default`` a grid trains at the zoo's budget (the default recipe, 2600 iterations) and every run
lands in ``results/ablations/<grid>/<variant slug>/seed<k>/`` as a zoo record the moment it ends; the paired
tables and the paper-claim table (:mod:`minidet.engine.paired`) are generated from those files
(``--table`` prints them without training).

The lessons call :func:`run_grid` with the same variants; finished runs (a ``metrics.json`` next to a
checkpoint at the last iteration) are read back instead of retrained, so a lesson re-executed after the
command above only evaluates nothing and plots.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any


from minidet.engine.checkpoint import load_checkpoint
from minidet.data import ShapesConfig
from minidet.data.shapes_config import SHAPES_VARIANTS
from minidet.engine.experiment import DataSpec, RunConfig, fast_mode, lesson_data, lesson_run_config, resolve_data, run

METRICS = ("AP", "AP50", "AP75")
RECIPES = ("lesson", "default")


def base_config(iters: int, recipe: str = "lesson") -> RunConfig:
    """The configuration every variant of a grid starts from: ``"lesson"`` is :func:`lesson_run_config` (the lessons'
    short runs, 3 iterations in fast mode); ``"default"`` is the default recipe of ``minidet train`` (the model
    zoo's, :func:`minidet.engine.zoo.default_recipe`), at ``iters`` iterations."""
    if recipe == "lesson":
        return lesson_run_config(iters=iters)
    if recipe == "default":
        from minidet.engine.zoo import default_recipe

        return default_recipe(iters=iters)
    raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")


def slug(name: str) -> str:
    """A variant's folder name: ``"retinanet PFL+LRP"`` -> ``"retinanet-pfl-lrp"``, ``"DW (no refinement)"`` ->
    ``"dw-no-refinement"``; a model name stays as it is (``"libra_rcnn"``)."""
    out = "".join(c if c.isalnum() or c == "_" else "-" for c in name.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def umop_variants(iters: int, recipe: str = "lesson") -> dict[str, RunConfig]:
    """UMOP Table 1 on the shapes data: RetinaNet and ATSS with FL, + PFL (the paper's Eq. 4), + PFL as the authors'
    code computes ``gamma_ad`` (``"pfl_official"``; default recipe only), + PFL + LRP, and (default recipe only) a
    control, the focal loss with PFL's lower-clip constants (gamma 1.5, alpha 1/3). "LRP" here is
    ``level_resampling=True``, i.e. ``"own_positives"``: minidet's *interpretation* of Eq. 1 (each level by its own positives, levels averaged). The
    authors' released code (``"code"``) normalises exactly as the pooled loss, so in their code "PFL + LRP" trains
    the same loss as "PFL" (:mod:`minidet.losses.lrp`) and needs no run of its own. The lesson recipe uses anchors
    of 2 x stride for RetinaNet and 4 x stride for ATSS; the default recipe keeps its own (2 x stride for both, as
    the zoo)."""
    variants = {}
    for model, scale in (("retinanet", 2.0), ("atss", 4.0)):
        rows = [("FL", {}), ("PFL", {"cls_loss": "pfl"}), ("PFL+LRP", {"cls_loss": "pfl", "level_resampling": True})]
        if recipe == "default":  # the lessons' grid (lesson 04) stays the three rows it shows
            rows.insert(2, ("PFL (official)", {"cls_loss": "pfl_official"}))
            # control: after the first quarter of training PFL sits at its lower clip on P3-P5 most of the time
            # (tools/pfl_trajectory.py), i.e. it is a focal loss with gamma 1.5 and alpha 0.5 / 1.5; this fixed
            # focal loss separates the progressive schedule from those end constants
            rows.append(("FL (gamma 1.5, alpha 1/3)", {"focal_gamma": 1.5, "focal_alpha": 1 / 3}))
        for name, kw in rows:
            cfg = base_config(iters, recipe)
            cfg.model, cfg.model_kwargs = model, dict(kw)
            if recipe == "lesson":
                cfg.octave_base_scale = scale
            variants[f"{model} {name}"] = cfg
    return variants


def dw_variants(iters: int, recipe: str = "lesson") -> dict[str, RunConfig]:
    """Dual Weighting on the shapes data: FCOS, DW without and with box refinement. In the lesson recipe FCOS's
    scale ranges are scaled by 1/4 to the 256 px images (P3 regresses distances up to 16 px, ..., P7 beyond
    128 px; 1-4 positives per object); the default recipe keeps COCO's ranges, as the zoo's FCOS (most objects on
    P3, with centre sampling several positives each). Snapshots at 10 %, 40 % and 100 % of training let a lesson
    look at the weights as training goes (a default-recipe grid takes the zoo's snapshots instead)."""
    from minidet.assigners.fcos import scaled_ranges

    variants = {}
    fcos_kw = {"scale_ranges": scaled_ranges(0.25)} if recipe == "lesson" else {}
    for name, model, kw in (("FCOS", "fcos", fcos_kw),
                            ("DW (no refinement)", "dw", {"refine": False}),
                            ("DW", "dw", {"refine": True})):
        cfg = base_config(iters, recipe)
        n = cfg.train.iters  # 3 in fast mode
        cfg.train.snapshot_iters = tuple(sorted({max(1, n // 10), max(1, 4 * n // 10)}))
        cfg.model, cfg.model_kwargs = model, dict(kw)
        variants[name] = cfg
    return variants


LIBRA_COMPONENTS = {
    "Faster R-CNN": {},
    "+IoU-balanced sampling": {"iou_balanced": True},
    "+BFP": {"bfp": True},
    "+Balanced L1": {"balanced_l1": True},
    "all three (Libra)": {"iou_balanced": True, "bfp": True, "balanced_l1": True},
}


def libra_variants(iters: int, recipe: str = "lesson") -> dict[str, RunConfig]:
    """Libra R-CNN's component ablation (its Table 2) on the shapes data: Faster R-CNN (tiny backbone,
    RPN anchors 4 x stride), each component alone, and the three together; with the default recipe also the
    three together with the authors' sampler (``iou_balanced="code"``, :mod:`minidet.samplers`)."""
    variants = {}
    components = dict(LIBRA_COMPONENTS)
    if recipe == "default":
        components["all three, code sampler"] = {"iou_balanced": "code", "bfp": True, "balanced_l1": True}
    for name, kw in components.items():
        cfg = base_config(iters, recipe)
        cfg.model, cfg.model_kwargs = "faster_rcnn", dict(kw)
        variants[name] = cfg
    return variants


def mimic_variants(iters: int, recipe: str = "lesson") -> dict[str, RunConfig]:
    """MimicDet with and without the mimic loss on the shapes data (tiny backbone; one anchor per location of
    ``anchor_scale x stride``, 16 px on P3 with the recipe's ``octave_base_scale = 2``); with the default recipe
    also RetinaNet, the one-stage baseline MimicDet is meant to beat, at the same budget."""
    variants = {}
    rows = [("MimicDet without mimic", "mimicdet", {"mimic": False}), ("MimicDet", "mimicdet", {"mimic": True})]
    if recipe == "default":
        rows.append(("RetinaNet", "retinanet", {}))
    for name, model, kw in rows:
        cfg = base_config(iters, recipe)
        cfg.model, cfg.model_kwargs = model, dict(kw)
        variants[name] = cfg
    return variants


CROWD_SHAPES = ShapesConfig(image_size=128, num_train=400, num_val=100, min_object_size=12, max_objects=8, crowd_prob=0.5,
                            seed=11)


def crowd_data(root: str | Path = "data") -> DataSpec:
    """The shapes variant with crowd regions (:data:`CROWD_SHAPES`: 128 px images, half of them with one
    ``iscrowd=1`` group of 9-16 small shapes); a 24/8-image version in fast mode."""
    cfg = (ShapesConfig(image_size=128, num_train=24, num_val=8, min_object_size=12, max_objects=8, crowd_prob=0.5, seed=11)
           if fast_mode() else CROWD_SHAPES)
    return resolve_data("shapes", Path(root) / ("shapes-crowd-fast" if fast_mode() else "shapes-crowd"), cfg)


def crowd_variants(iters: int) -> dict[str, RunConfig]:
    """RetinaNet on :func:`crowd_data` (128 px input) with the crowd boxes dropped (their anchors negatives) or as
    ignore regions."""
    variants = {}
    for name, mode in (("crowds dropped", "drop"), ("crowds ignored", "ignore")):
        cfg = lesson_run_config(iters=iters, warmup_iters=max(1, iters // 5))  # a short run: warm up for a fifth of it
        cfg.crowd, cfg.size = mode, CROWD_SHAPES.image_size
        variants[name] = cfg
    return variants


def _finished(out: Path, iters: int) -> bool:
    if not (out / "metrics.json").is_file() or not (out / "last.pt").is_file():
        return False
    return int(load_checkpoint(out / "last.pt")["iteration"]) >= iters


def run_grid(spec: DataSpec, variants: dict[str, RunConfig], seeds: list[int], out_root: str | Path,
             device: str | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Train and evaluate every (variant, seed); returns one row per run with its COCO metrics, its
    history and its folder. Runs already finished under ``out_root`` are read back, not retrained."""
    rows = []
    for name, cfg in variants.items():
        for seed in seeds:
            out = Path(out_root) / name.replace(" ", "_").replace("+", "_") / f"seed{seed}"
            c = copy.deepcopy(cfg)
            c.train.seed = seed
            if _finished(out, c.train.iters):
                metrics = json.loads((out / "metrics.json").read_text())
                history = json.loads((out / "history.json").read_text())
            else:
                result = run(spec, c, out, device=device, progress=progress)
                metrics, history = result["metrics"], result["history"].rows
            rows.append({"variant": name, "seed": seed, "dir": str(out), "history": history, **metrics})
    return rows


def summarize(rows: list[dict[str, Any]], metrics: tuple[str, ...] = METRICS) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{variant: {metric: (mean, sample std (0 for one seed), n)}}``."""
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        vals = [r for r in rows if r["variant"] == name]
        out[name] = {}
        for m in metrics:
            xs = [r[m] for r in vals]
            out[name][m] = (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0, len(xs))
    return out


def within_noise(a: tuple[float, float, int], b: tuple[float, float, int]) -> bool:
    """Is the difference of two (mean, std, n) results within noise? We call a difference real only when
    it exceeds twice the larger of the two seed-to-seed standard deviations (a deliberately cautious
    rule for 2-3 seeds, where a t-test has almost no power)."""
    return abs(a[0] - b[0]) <= 2 * max(a[1], b[1])


def format_table(summary: dict[str, dict[str, tuple[float, float, int]]], baseline_of: dict[str, str] | None = None) -> str:
    """A markdown table ``variant | AP | AP50 | AP75 | vs baseline`` with mean +- std over seeds."""
    metrics = list(next(iter(summary.values())))
    lines = ["| variant | seeds | " + " | ".join(metrics) + " | AP vs baseline |", "|---" * (len(metrics) + 3) + "|"]
    for name, s in summary.items():
        cells = [f"{100 * m:.1f} ± {100 * sd:.1f}" for m, sd, _ in s.values()]
        note = ""
        base = (baseline_of or {}).get(name)
        if base and base != name:
            d = s["AP"][0] - summary[base]["AP"][0]
            note = f"{100 * d:+.1f} ({'within noise' if within_noise(s['AP'], summary[base]['AP']) else 'beyond noise'})"
        lines.append(f"| {name} | {s['AP'][2]} | " + " | ".join(cells) + f" | {note} |")
    return "\n".join(lines)


def umop_baselines(names: list[str]) -> dict[str, str]:
    return {n: n.split(" ")[0] + " FL" for n in names}


def run_default_grid(spec: DataSpec, grid: str, variants: dict[str, RunConfig], seeds: list[int], runs_root: str | Path,
                     results_root: str | Path, device: str = "cpu", amp: bool = True, command: str = "") -> None:
    """Train every (seed, variant) of a default-recipe grid as a zoo run (:func:`minidet.engine.zoo.run_one`: AP
    snapshots, timings, a ``metrics.json`` in ``<results_root>/<slug>/seed<k>/`` the moment the run ends, resume from
    the last checkpoint of a killed run, skip a finished one). Seeds are the outer loop, so the paired differences
    of a seed land together."""
    from minidet.engine.zoo import run_one

    for seed in seeds:
        for name, cfg in variants.items():
            run_one(cfg.model, seed, cfg.train.iters, Path(runs_root), Path(results_root), spec, device=device,
                    command=command, amp=amp, cfg=cfg, name=slug(name))


DEFAULT_GRIDS = {"umop": umop_variants, "dw": dw_variants, "libra": libra_variants, "mimic": mimic_variants}  # (iters, recipe)


def default_grid_tables(results_dir: str | Path, grid: str) -> str:
    """The paired tables of a default-recipe grid's results (:func:`minidet.engine.paired.grid_table`): UMOP one per
    detector against its FL row, DW against FCOS, Libra against Faster R-CNN, MimicDet against MimicDet without
    mimic. Variants without a finished run are left out."""
    from minidet.engine.paired import grid_table, load_grid

    names = list(DEFAULT_GRIDS[grid](2600, "default"))
    groups = [([n for n in names if n.startswith(m)], f"{m} FL") for m in ("retinanet", "atss")] if grid == "umop" else [(names, names[0])]
    done = load_grid(results_dir)
    # a grid whose first row has no run yet (e.g. DW's FCOS, trained in the zoo only) pairs with its first row that has
    groups = [(group, base if slug(base) in done else next((n for n in group if slug(n) in done), base)) for group, base in groups]
    tables = [grid_table(results_dir, group, base) for group, base in groups]
    tables = [t for t in tables if t.count("\n") > 1]  # a table with rows
    return "\n\n".join(tables) or f"(no finished run under `{results_dir}` yet)"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m minidet.engine.ablation")
    p.add_argument("grid", choices=("umop", "dw", "libra", "mimic", "crowd"))
    p.add_argument("--recipe", default="lesson", choices=RECIPES,
                   help="lesson: the lessons' short runs (run_grid, one json with --results); default: the zoo's recipe, "
                        "each run's metrics.json under --results-dir as it lands, then the paired table")
    p.add_argument("--iters", type=int, default=None, help="iterations (default: 800 lesson, 2600 default recipe)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", default=None, help="run folders (default runs/<grid> or runs/ablations/<grid>)")
    p.add_argument("--data-root", default="data")
    p.add_argument("--shapes", default="default", choices=sorted(SHAPES_VARIANTS),
                   help="shapes data variant (minidet.data.shapes_config.SHAPES_VARIANTS): 'small' for level imbalance, "
                        "'crowded' for near-miss negatives; written under <data-root>/shapes-<variant>")
    p.add_argument("--device", default=None)
    p.add_argument("--no-amp", dest="amp", action="store_false", help="default recipe: fp32 where it would use bf16 autocast")
    p.add_argument("--results", default=None, help="lesson recipe: also write the per-seed metrics and the table to this json")
    p.add_argument("--results-dir", default=None, help="default recipe: where each run's metrics.json goes "
                   "(default results/ablations/<grid>, or <grid>-<shapes> on a variant of the data)")
    p.add_argument("--table", action="store_true", help="default recipe: print the tables of the finished runs, train nothing")
    p.add_argument("--only", nargs="+", default=None, help="train only these variants (e.g. one per process); "
                   "a later call without --only reads the finished runs back")
    args = p.parse_args(argv)
    iters = args.iters or (800 if args.recipe == "lesson" else 2600)
    variants = (crowd_variants(iters) if args.grid == "crowd" else DEFAULT_GRIDS[args.grid](iters, args.recipe))
    names = list(variants)
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit(f"--only: no variant {unknown} in grid {args.grid!r}; its variants: {names}")
        variants = {k: v for k, v in variants.items() if k in args.only}
    if args.grid == "crowd":
        spec = crowd_data(args.data_root)
    elif args.shapes == "default":
        spec = lesson_data(args.data_root) if args.recipe == "lesson" else resolve_data("shapes", Path(args.data_root) / "shapes")
    else:
        spec = resolve_data("shapes", Path(args.data_root) / f"shapes-{args.shapes}", SHAPES_VARIANTS[args.shapes])
    command = "python -m minidet.engine.ablation " + " ".join(argv)
    if args.recipe == "default":
        from minidet.engine.paired import claims_table

        results_dir = Path(args.results_dir or f"results/ablations/{args.grid}" + ("" if args.shapes == "default" else f"-{args.shapes}"))
        if not args.table:
            run_default_grid(spec, args.grid, variants, args.seeds, args.out or f"runs/ablations/{results_dir.name}",
                             results_dir, args.device or "cpu", args.amp, command)
        print(default_grid_tables(results_dir, args.grid), end="\n\n")
        print(claims_table(results_dir.parent) if args.shapes == "default" else "")
        return
    rows = run_grid(spec, variants, args.seeds, args.out or f"runs/{args.grid}", args.device, progress=True)
    summary = summarize(rows)
    first = next(iter(summary))
    baselines = umop_baselines(list(summary)) if args.grid == "umop" else {n: first for n in summary}
    table = format_table(summary, baselines)
    print(table)
    if args.results:
        keep = ("variant", "seed", "AP", "AP50", "AP75", "APs", "APm", "APl")
        record = {"command": command, "iters": iters, "runs": [{k: r[k] for k in keep} for r in rows], "table": table}
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
