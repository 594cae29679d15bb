"""Paired differences over seeds, and each paper's claim beside the effect measured at the zoo's budget.

Two variants trained with the same seed share their initial weights and their order of batches, so the per-seed
difference ``d_s = AP(variant, s) - AP(baseline, s)`` removes most of the seed-to-seed spread that both share.
Over ``n`` seeds we report the mean difference with a 95 % t-interval,

.. math:: \\bar d \\pm t_{0.975,\\,n-1}\\, s_d / \\sqrt{n},

and call an effect *beyond noise* only when that interval excludes zero. With 3 seeds ``t = 4.30``: an effect
must be large against its own seed-to-seed wobble to count, which is the honest position for so few runs.

A default-recipe ablation grid (``python -m minidet.engine.ablation <grid> --recipe default``) writes
``<results>/<variant slug>/seed<k>/metrics.json`` (the zoo's record, :func:`minidet.engine.zoo.run_one`);
:func:`claims_table` reads those files and nothing else.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# two-sided 95 % quantiles of Student's t with 1..10 degrees of freedom
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def load_grid(results_root: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``{variant slug: {seed: metrics.json record}}`` of every finished run under ``results_root``."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(Path(results_root).glob("*/seed*/metrics.json")):
        rec = json.loads(path.read_text())
        out.setdefault(path.parent.parent.name, {})[int(rec["seed"])] = rec
    return out


@dataclass
class Paired:
    """The per-seed differences of one variant against its baseline (in AP points, i.e. x 100)."""

    seeds: list[int]
    diffs: list[float]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.diffs)

    @property
    def half_width(self) -> float:
        """Half-width of the 95 % t-interval of the mean difference (``inf`` for one seed)."""
        if self.n < 2:
            return math.inf
        return T975[min(self.n - 1, len(T975)) - 1] * statistics.stdev(self.diffs) / math.sqrt(self.n)

    def verdict(self, expected_sign: int = 0) -> str:
        """``"reproduced"`` / ``"contradicted"`` (the interval excludes 0 on the claimed / the other side),
        ``"within noise"`` (it contains 0), ``"1 seed: no verdict"``; with ``expected_sign = 0`` (no claim)
        ``"beyond noise"`` or ``"within noise"``."""
        if self.n < 2:
            return "1 seed: no verdict"
        if abs(self.mean) <= self.half_width:
            return "within noise"
        if expected_sign == 0:
            return "beyond noise"
        return "reproduced" if math.copysign(1, self.mean) == expected_sign else "contradicted"


def paired(variant: dict[int, dict[str, Any]], baseline: dict[int, dict[str, Any]], metric: str = "AP") -> Paired:
    """Differences on the seeds both have finished, ``100 * (variant - baseline)``."""
    seeds = sorted(set(variant) & set(baseline))
    return Paired(seeds, [100 * (variant[s][metric] - baseline[s][metric]) for s in seeds])


@dataclass(frozen=True)
class Claim:
    """One comparison a paper makes: ``variant`` against ``baseline`` (variant names of an ablation grid), what the
    paper says, and the sign of the effect it reports (+1: the variant is better)."""

    grid: str
    variant: str
    baseline: str
    paper: str
    sign: int = 1


CLAIMS = (
    Claim("umop", "retinanet PFL", "retinanet FL", "UMOP: PFL raises RetinaNet's AP over the focal loss"),
    Claim("umop", "retinanet PFL (official)", "retinanet FL", "UMOP's code: PFL (gamma_ad = mean(-log p)) raises AP over FL"),
    Claim("umop", "retinanet PFL+LRP", "retinanet PFL", "UMOP: level-wise resampling adds AP on top of PFL"),
    Claim("umop", "atss PFL", "atss FL", "UMOP: PFL raises ATSS's AP over the focal loss"),
    Claim("umop", "atss PFL+LRP", "atss PFL", "UMOP: level-wise resampling adds AP on top of PFL (ATSS)"),
    Claim("dw", "DW", "FCOS", "DW: dual weighting raises AP over FCOS"),
    Claim("dw", "DW", "DW (no refinement)", "DW: box refinement adds AP"),
    Claim("libra", "+IoU-balanced sampling", "Faster R-CNN", "Libra: IoU-balanced sampling adds AP"),
    Claim("libra", "+BFP", "Faster R-CNN", "Libra: the Balanced Feature Pyramid adds AP"),
    Claim("libra", "+Balanced L1", "Faster R-CNN", "Libra: Balanced L1 adds AP"),
    Claim("libra", "all three (Libra)", "Faster R-CNN", "Libra: 2.5 AP over FPN Faster R-CNN (COCO)"),
    Claim("mimic", "MimicDet", "MimicDet without mimic", "MimicDet: the mimic loss adds AP"),
    Claim("mimic", "MimicDet", "RetinaNet", "MimicDet: beats the one-stage RetinaNet"),
    # the zoo's own runs (bf16 where the CPU has it; each seed's pair trained on one machine): grid "zoo" is the
    # zoo's results folder, its variants the model names
    Claim("zoo", "atss", "retinanet", "ATSS: adaptive training sample selection raises AP over RetinaNet"),
    Claim("zoo", "fcos", "retinanet", "FCOS: the anchor-free detector beats RetinaNet"),
    Claim("zoo", "dw", "fcos", "DW: dual weighting raises AP over FCOS"),
    Claim("zoo", "libra_rcnn", "faster_rcnn", "Libra: 2.5 AP over FPN Faster R-CNN (COCO)"),
    Claim("zoo", "mimicdet", "retinanet", "MimicDet: beats the one-stage RetinaNet"),
)


def claims_table(results_root: str | Path = "results/ablations", claims: tuple[Claim, ...] = CLAIMS,
                 grids: tuple[str, ...] | None = None, zoo_root: str | Path | None = None, show_missing: bool = False) -> str:
    """Markdown table: each claim (of ``grids``, where given) whose two variants have a finished run under
    ``<results_root>/<grid>/``, with the seeds, the per-seed differences, the mean difference +- its 95 % t half-width
    (AP points), and the verdict. A claim not measured yet is listed as such with ``grids`` or ``show_missing``. Grid ``"zoo"`` reads ``zoo_root``
    (default: ``zoo`` beside ``results_root``, i.e. ``results/zoo``)."""
    from minidet.engine.ablation import slug

    lines = ["| grid | paper's claim | variant vs baseline | seeds | per-seed AP difference | mean ± 95 % CI | verdict |",
             "|---|---|---|---|---|---|---|"]
    loaded: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for c in claims:
        if grids is not None and c.grid not in grids:
            continue
        folder = Path(zoo_root or Path(results_root).parent / "zoo") if c.grid == "zoo" else Path(results_root) / c.grid
        runs = loaded.setdefault(c.grid, load_grid(folder))
        a, b = runs.get(slug(c.variant)), runs.get(slug(c.baseline))
        p = paired(a or {}, b or {})
        if not p.n:
            if grids is not None or show_missing:  # a lesson's own claims: say which are still to be measured
                lines.append(f"| {c.grid} | {c.paper} | {c.variant} vs {c.baseline} | | | | not measured yet |")
            continue
        ci = "" if p.n < 2 else f" ± {p.half_width:.1f}"
        lines.append(f"| {c.grid} | {c.paper} | {c.variant} vs {c.baseline} | {', '.join(map(str, p.seeds))} | "
                     + ", ".join(f"{d:+.1f}" for d in p.diffs) + f" | {p.mean:+.1f}{ci} | {p.verdict(c.sign)} |")
    return "\n".join(lines)


def grid_table(results_root: str | Path, variants: list[str], baseline: str) -> str:
    """Markdown table of one default-recipe grid: per variant the seeds, AP / AP50 / AP75 / APs as mean +- std (%),
    and the paired AP difference against ``baseline`` (mean +- 95 % half-width, per seed)."""
    from minidet.engine.ablation import slug
    from minidet.engine.zoo import _mean_std  # the zoo table's "mean ± std" in %

    runs = load_grid(results_root)
    metrics = ("AP", "AP50", "AP75", "APs")
    lines = ["| variant | seeds | " + " | ".join(metrics) + f" | AP vs {baseline} (paired) | per seed |",
             "|---" * (len(metrics) + 4) + "|"]
    for name in variants:
        recs = runs.get(slug(name))
        if not recs:
            continue
        cells = [_mean_std([r[m] for r in recs.values()]) for m in metrics]
        diff = per_seed = ""
        if name != baseline and slug(baseline) in runs:
            p = paired(recs, runs[slug(baseline)])
            if p.n:
                diff = f"{p.mean:+.1f}" + ("" if p.n < 2 else f" ± {p.half_width:.1f}") + f" ({p.verdict()})"
                per_seed = ", ".join(f"{d:+.1f}" for d in p.diffs)
        lines.append(f"| {name} | {', '.join(map(str, sorted(recs)))} | " + " | ".join(cells) + f" | {diff} | {per_seed} |")
    return "\n".join(lines)
