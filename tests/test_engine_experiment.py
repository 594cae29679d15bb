"""Lesson helpers of minidet.engine.experiment: where fast-mode runs go."""
import os
import subprocess
import sys
from pathlib import Path


def test_fast_mode_runs_go_to_a_temporary_folder_removed_at_exit(tmp_path):
    code = ("from minidet.engine.experiment import lesson_run_dir\n"
            "d = lesson_run_dir('lesson03', 'runs'); d.mkdir(parents=True); (d / 'last.pt').write_bytes(b'x' * 1000)\n"
            "print(d)\n")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "MINIDET_FAST": "1", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    d = Path(out.stdout.strip())
    assert d.name == "lesson03-fast" and tmp_path not in d.parents  # not next to the lesson
    assert not d.exists() and not d.parent.exists()  # removed when the process ended
    assert not (tmp_path / "runs").exists()


def test_full_mode_runs_go_under_the_root(monkeypatch):
    from minidet.engine.experiment import lesson_run_dir

    monkeypatch.setenv("MINIDET_FAST", "0")
    assert lesson_run_dir("dw", "../runs") == Path("../runs/dw")
