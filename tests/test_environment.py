"""environment.yml (conda) and pyproject.toml (pip) must describe the same environment."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "pip" in deps
    assert any(str(d).startswith("python") and project["requires-python"].lstrip(">=") in str(d) for d in deps)
    conda_reqs = {_name(r): r for r in pip if not r.startswith("-e")}
    extras = project["optional-dependencies"]
    included = [r[len("minidet["):-1] for r in extras["test"] if r.startswith("minidet[")]  # extras that "test" pulls in
    expected = list(project["dependencies"]) + [r for x in included for r in extras[x]] + [r for r in extras["test"] if not r.startswith("minidet")]
    assert {_name(r): r for r in expected} == conda_reqs  # same packages, same version bounds
    editable = [r for r in pip if r.startswith("-e")]
    assert editable == ["-e .[test]"] and "test" in extras
