"""The zoo runner: one tiny run end to end, results written at once, finished runs skipped, tables from files."""
import json

import pytest

from minidet.data import ShapesConfig
from minidet.engine import zoo
from minidet.engine.experiment import resolve_data
from minidet.engine.precision import cpu_has_native_bf16


def test_compact_history_averages_windows():
    rows = [{"iter": i, "lr": 0.1, "loss": float(i), "levels/loss_cls": [i, 2 * i]} for i in range(1, 6)]
    out = zoo.compact_history(rows, window=2)
    assert [r["iter"] for r in out] == [2, 4, 5]
    assert out[0]["loss"] == 1.5 and out[1]["levels/loss_cls"] == [3.5, 7.0] and out[2]["loss"] == 5.0


def test_snapshot_points_are_inside_the_run():
    assert zoo.snapshot_points(2600, 4) == (650, 1300, 1950)
    assert zoo.snapshot_points(3, 4) == (1, 2)


def test_default_recipe_is_the_cli_default():
    from minidet.cli import DEFAULT_TRAIN

    cfg = zoo.default_recipe("fcos", iters=10, seed=3)
    assert cfg.model == "fcos" and cfg.train.iters == 10 and cfg.train.seed == 3
    assert (cfg.train.lr, cfg.train.optimizer, cfg.train.weight_decay) == (DEFAULT_TRAIN.lr, DEFAULT_TRAIN.optimizer,
                                                                           DEFAULT_TRAIN.weight_decay)
    assert DEFAULT_TRAIN.iters == 2600  # the copy did not change the default


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo-data")
    return resolve_data("shapes", root / "shapes", ShapesConfig(num_train=16, num_val=8, seed=0))


def test_run_one_writes_results_and_skips_finished(tiny_spec, tmp_path, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    rec = zoo.run_one("retinanet", 0, 4, runs, results, tiny_spec, snapshots=2, command="test")
    path = results / "retinanet" / "seed0" / "metrics.json"
    assert json.loads(path.read_text()) == rec
    assert [c["iter"] for c in rec["curve"]] == [2, 4] and rec["curve"][-1]["AP"] == rec["AP"]
    assert rec["params"] > 0 and rec["infer_ms_per_image"] > 0 and rec["seconds_per_iter"] > 0 and rec["timed_steps"] == 4
    assert rec["recipe"]["train"]["iters"] == 4 and rec["machine_at_start"]["torch_threads"] >= 1
    native = rec["machine_at_start"]["cpu_native_bf16"]
    assert native == cpu_has_native_bf16() and rec["precision"] == ("bf16" if native else "fp32")
    hist = json.loads((results / "retinanet" / "seed0" / "history.json").read_text())
    assert hist[-1]["iter"] == 4 and "loss" in hist[-1]
    assert not list(results.rglob("*.pt"))  # no checkpoint among the results

    def boom(*a, **k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(zoo, "run", boom)
    assert zoo.run_one("retinanet", 0, 4, runs, results, tiny_spec, snapshots=2) == rec

    table = zoo.zoo_table(results)
    assert "| retinanet | 4 | 1 |" in table and f"{100 * rec['AP']:.1f}" in table
    assert "AP @ 2" in zoo.curve_table(results)


def test_no_amp_run_is_recorded_as_fp32(tiny_spec, tmp_path):
    rec = zoo.run_one("retinanet", 0, 2, tmp_path / "runs", tmp_path / "results", tiny_spec, snapshots=1, amp=False)
    assert rec["precision"] == "fp32" and rec["recipe"]["train"]["amp"] is False


def test_run_one_resumes_a_killed_run(tiny_spec, tmp_path):
    """A run folder with a checkpoint part-way (as a killed run leaves it) continues from there."""
    from minidet.engine.checkpoint import load_checkpoint
    from minidet.engine.experiment import run

    cfg = zoo.default_recipe("retinanet", 4, 0)
    cfg.train.snapshot_iters = zoo.snapshot_points(4, 2)
    out = tmp_path / "runs" / "retinanet" / "seed0"
    run(tiny_spec, cfg, out, progress=False, evaluate_after=False, max_train_seconds=0)  # stopped after one step
    assert int(load_checkpoint(out / "last.pt")["iteration"]) == 1
    rec = zoo.run_one("retinanet", 0, 4, tmp_path / "runs", tmp_path / "results", tiny_spec, snapshots=2)
    assert rec["timed_steps"] == 3  # only the missing steps were trained
    assert int(load_checkpoint(out / "last.pt")["iteration"]) == 4


def test_curves_figure_is_drawn_from_the_results(tmp_path):
    """``python -m minidet.engine.zoo plot``: one line per model from the committed records; none is an error."""
    import matplotlib.pyplot as plt

    from minidet.errors import ConfigError
    from minidet.viz.training import plot_zoo_curves

    for model, seed, aps in (("retinanet", 0, (0.1, 0.5)), ("retinanet", 1, (0.2, 0.6)), ("fcos", 0, (0.1, 0.4))):
        d = tmp_path / model / f"seed{seed}"
        d.mkdir(parents=True)
        d.joinpath("metrics.json").write_text(json.dumps({"model": model, "seed": seed, "curve": [
            {"iter": 10, "AP": aps[0]}, {"iter": 20, "AP": aps[1]}]}))
    out = zoo.plot_curves(tmp_path, tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = plot_zoo_curves(zoo.load_results(tmp_path))
    lines = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"retinanet (2 seeds)", "fcos (1 seed)"}
    assert list(lines["retinanet (2 seeds)"].get_ydata()) == pytest.approx([15.0, 55.0])
    plt.close("all")
    with pytest.raises(ConfigError, match="no finished zoo run"):
        zoo.plot_curves(tmp_path / "empty", tmp_path / "d.png")
