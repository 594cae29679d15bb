"""Paired differences over seeds, the paper-claim verdicts, and the default-recipe ablation grid that feeds them."""
import json
import math
import statistics

import pytest

from minidet.data import ShapesConfig
from minidet.engine import ablation, paired
from minidet.engine.experiment import resolve_data


def _rec(seed, ap):
    return {"seed": seed, "AP": ap, "AP50": ap + 0.2, "AP75": ap, "APs": ap - 0.1}


def test_paired_interval_is_students_t_by_hand():
    base = {0: _rec(0, 0.50), 1: _rec(1, 0.55), 2: _rec(2, 0.52)}
    var = {0: _rec(0, 0.53), 1: _rec(1, 0.57), 2: _rec(2, 0.56), 3: _rec(3, 0.9)}  # seed 3 has no partner
    p = paired.paired(var, base)
    assert p.seeds == [0, 1, 2] and p.diffs == pytest.approx([3.0, 2.0, 4.0])
    sd = statistics.stdev([3.0, 2.0, 4.0])  # 1.0
    assert p.half_width == pytest.approx(4.303 * sd / math.sqrt(3))  # t(0.975, 2 dof) = 4.303
    assert p.verdict(+1) == "reproduced" and p.verdict(-1) == "contradicted" and p.verdict() == "beyond noise"


def test_an_interval_across_zero_is_within_noise_and_one_seed_gives_no_verdict():
    p = paired.Paired([0, 1, 2], [3.0, -2.0, 1.0])
    assert p.verdict(+1) == "within noise"
    assert paired.Paired([0], [5.0]).verdict(+1) == "1 seed: no verdict"


def test_slugs_are_folder_names():
    assert ablation.slug("retinanet PFL+LRP") == "retinanet-pfl-lrp"
    assert ablation.slug("DW (no refinement)") == "dw-no-refinement"
    assert ablation.slug("retinanet PFL (official)") == "retinanet-pfl-official"


def test_claims_table_reads_only_finished_pairs(tmp_path):
    for name, aps in (("retinanet-fl", [0.50, 0.55, 0.52]), ("retinanet-pfl", [0.49, 0.56, 0.50])):
        for seed, ap in enumerate(aps):
            d = tmp_path / "umop" / name / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps(_rec(seed, ap)))
    table = paired.claims_table(tmp_path)
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == 1  # only PFL vs FL on RetinaNet has both sides
    assert "-1.0, +1.0, -2.0" in rows[0] and "within noise" in rows[0]
    grid = paired.grid_table(tmp_path / "umop", ["retinanet FL", "retinanet PFL"], "retinanet FL")
    assert "| retinanet FL | 0, 1, 2 | 52.3 ± 2.5 |" in grid and "-0.7 ±" in grid


def test_default_recipe_variants_are_the_zoo_recipe():
    from minidet.engine.zoo import default_recipe

    v = ablation.umop_variants(2600, "default")
    assert list(v) == [f"{m} {n}" for m in ("retinanet", "atss")
                       for n in ("FL", "PFL", "PFL (official)", "PFL+LRP", "FL (gamma 1.5, alpha 1/3)")]
    assert v["atss FL (gamma 1.5, alpha 1/3)"].model_kwargs == {"focal_gamma": 1.5, "focal_alpha": 1 / 3}
    assert ablation.slug("atss FL (gamma 1.5, alpha 1/3)") == "atss-fl-gamma-1-5-alpha-1-3"
    zoo_atss = default_recipe("atss")
    assert v["atss FL"].octave_base_scale == zoo_atss.octave_base_scale and v["atss FL"].train == zoo_atss.train
    assert v["retinanet PFL (official)"].model_kwargs == {"cls_loss": "pfl_official"}
    assert "PFL (official)" not in " ".join(ablation.umop_variants(800))  # the lesson's grid is unchanged
    assert ablation.dw_variants(2600, "default")["FCOS"].model_kwargs == {}  # COCO ranges, as the zoo's FCOS
    assert "all three, code sampler" in ablation.libra_variants(2600, "default")
    assert ablation.mimic_variants(2600, "default")["RetinaNet"].model == "retinanet"


def test_pfl_official_trains_the_authors_gamma():
    from minidet.engine.experiment import build_model

    m = build_model("retinanet", 3, cls_loss="pfl_official")
    assert m.cls_loss.variant == "official"
    assert build_model("retinanet", 3, cls_loss="pfl").cls_loss.variant == "paper"


def test_default_grid_writes_each_run_and_skips_it_next_time(tmp_path, monkeypatch):
    spec = resolve_data("shapes", tmp_path / "shapes", ShapesConfig(num_train=8, num_val=4, seed=0))
    variants = {k: v for k, v in ablation.umop_variants(2, "default").items() if k in ("retinanet FL", "retinanet PFL")}
    ablation.run_default_grid(spec, "umop", variants, [0], tmp_path / "runs", tmp_path / "res", amp=False, command="t")
    runs = paired.load_grid(tmp_path / "res")
    assert sorted(runs) == ["retinanet-fl", "retinanet-pfl"]
    rec = runs["retinanet-pfl"][0]
    assert rec["variant"] == "retinanet-pfl" and rec["recipe"]["model_kwargs"] == {"cls_loss": "pfl"}
    assert rec["precision"] == "fp32" and rec["iters"] == 2

    from minidet.engine import zoo

    monkeypatch.setattr(zoo, "run", lambda *a, **k: pytest.fail("a finished run was trained again"))
    ablation.run_default_grid(spec, "umop", variants, [0], tmp_path / "runs", tmp_path / "res", amp=False)


def test_report_renders_ablation_and_claims_blocks(tmp_path):
    from minidet.engine.report import update

    for name, aps in (("dw", [0.60, 0.62]), ("dw-no-refinement", [0.58, 0.59])):
        for seed, ap in enumerate(aps):
            d = tmp_path / "results" / "ablations" / "dw" / name / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps(_rec(seed, ap)))
    text = ("<!-- table:ablation:results/ablations/dw -->\nold\n<!-- /table -->\n"
            "<!-- table:claims:results/ablations -->\nold\n<!-- /table -->\n"
            "<!-- table:ablation:results/ablations/umop -->\nold\n<!-- /table -->\n")
    out = update(text, tmp_path)
    assert "| DW (no refinement) | 0, 1 | 58.5 ± 0.7 |" in out and "| DW | 0, 1 | 61.0 ± 1.4 |" in out
    assert "DW: box refinement adds AP | DW vs DW (no refinement) | 0, 1 | +2.0, +3.0 | +2.5 ± 6.4 | within noise |" in out
    assert "(no finished run under" in out and "old" not in out


def test_training_hours_sum_the_timed_steps(tmp_path):
    from minidet.engine.report import render

    for i, (spi, steps) in enumerate(((0.5, 3600), (1.0, 1800))):
        d = tmp_path / "results" / "g" / f"v{i}" / "seed0"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"seconds_per_iter": spi, "timed_steps": steps}))
    out = render("hours:results/g,results/none", tmp_path)
    assert "| `g` | 2 | 1.0 |" in out and "| `none` | 0 | 0.0 |" in out and "**1.0**" in out


def test_pfl_trajectory_counts_steps_at_the_lower_clip():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "tools" / "pfl_trajectory.py"
    spec = importlib.util.spec_from_file_location("pfl_trajectory", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    # 8 logged steps; after the first quarter (iters 30-80) P3 sits at 1.5 on 4 of 6 steps, P4 never
    hist = [{"iter": 10 * (i + 1), "levels/pfl_gamma": [g, 2.0], "levels/pfl_alpha": [0.5 / g, 0.25],
             "levels/pos_prob": [0.1, 0.0]} for i, g in enumerate([2.5, 2.0, 1.7, 1.5, 1.5, 1.6, 1.5, 1.5])]
    s = tool.summarize_run(hist)
    assert s["share_at_lower_clip_after_quarter"] == [4 / 6, 0.0]
    assert s["snapshots"]["end"]["iter"] == 80 and s["snapshots"]["half"]["iter"] == 40
    with pytest.raises(ValueError, match="pfl_gamma"):
        tool.summarize_run([{"iter": 10, "loss": 1.0}])
