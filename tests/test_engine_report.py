"""Generated tables: blocks are rewritten from results files, and the README's blocks are up to date."""
import json
from pathlib import Path

import pytest

from minidet.engine import report
from minidet.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_update_rewrites_only_the_blocks(tmp_path):
    (tmp_path / "results" / "g").mkdir(parents=True)
    (tmp_path / "results" / "g" / "t.json").write_text(json.dumps({"command": "python -m x", "table": "| a |\n|---|\n| 1 |"}))
    text = "intro\n<!-- table:results/g/t.json -->\nold typed numbers\n<!-- /table -->\noutro\n"
    new = report.update(text, tmp_path)
    assert new == "intro\n<!-- table:results/g/t.json -->\n`python -m x` ->\n\n| a |\n|---|\n| 1 |\n<!-- /table -->\noutro\n"
    assert report.update(new, tmp_path) == new  # idempotent


def test_unknown_or_missing_results_are_named(tmp_path):
    with pytest.raises(ConfigError, match="results/none.json"):
        report.update("<!-- table:results/none.json -->\n<!-- /table -->", tmp_path)
    with pytest.raises(ConfigError, match="unknown table name 'nope'"):
        report.update("<!-- table:nope -->\n<!-- /table -->", tmp_path)


def test_zoo_block_without_results(tmp_path):
    assert "no finished run" in report.update("<!-- table:zoo:results/zoo -->\n<!-- /table -->", tmp_path)


def test_readme_and_book_tables_match_the_results():
    """Every generated table in the README is what the committed results give: no number typed by hand."""
    for name in ("README.md",):
        text = (ROOT / name).read_text()
        assert report.update(text, ROOT) == text, f"{name}: run python -m minidet.engine.report {name}"


def test_bench_block_shows_the_latest_line_of_each_setting(tmp_path):
    base = {"minidet_s": 2.0, "torchvision_s": 2.2, "speedup": 1.1, "minidet_loss_s": 0.1, "torchvision_loss_s": 0.25,
            "loss_speedup": 2.5, "minidet_infer_s": 0.5, "torchvision_infer_s": 0.5, "minidet_train_peak_mib": 300,
            "torchvision_train_peak_mib": 320, "threads": 1, "date": "2026-12-02T10:00:00", "load_avg_1min": 1.0,
            "cpu_native_bf16": True}
    lines = [{**base, "args": "--model fcos", "loss_speedup": 0.8}, {**base, "args": "--model retinanet"},
             {**base, "args": "--model fcos"}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = report.update("<!-- table:bench:b.jsonl -->\n<!-- /table -->", tmp_path)
    rows = [r for r in out.splitlines() if r.startswith("| `")]
    assert len(rows) == 2 and "**0.80**" not in out and out.count("**2.50**") == 2
    with pytest.raises(ConfigError, match="none.jsonl"):
        report.update("<!-- table:bench:none.jsonl -->\n<!-- /table -->", tmp_path)
