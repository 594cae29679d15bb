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
