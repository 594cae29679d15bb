"""The command line end to end on a tiny dataset, and its error messages."""
import json
import subprocess
import sys

import pytest

from minidet.cli import main
from minidet.engine.experiment import load_detector


def test_train_then_eval_writes_run_folder(tiny_shapes, tmp_path):
    out = tmp_path / "run"
    code = main(["train", "--data", str(tiny_shapes["root"]), "--iters", "4", "--size", "96", "--batch", "4",
                 "--workers", "0", "--out", str(out), "--device", "cpu"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert len(json.loads((out / "history.json").read_text())) == 4
    assert (out / "last.pt").is_file()
    code = main(["eval", str(out / "last.pt"), "--data", str(tiny_shapes["root"]), "--workers", "0", "--out", str(tmp_path / "ev")])
    assert code == 0
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["AP"] == metrics["AP"]


def test_bad_data_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--iters", "1"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "minidet", "train", "--help"], capture_output=True, text=True, check=True)
    assert "--model" in out.stdout and "--data" in out.stdout and "--epochs" in out.stdout


@pytest.mark.parametrize("model", ["fcos", "dw"])
def test_point_detectors_train_and_reload(model, tiny_shapes, tmp_path):
    """FCOS and DW through the same recipe: the anchor scale in the saved config is ignored on reload."""
    out = tmp_path / model
    code = main(["train", "--model", model, "--data", str(tiny_shapes["root"]), "--iters", "2", "--size", "96",
                 "--batch", "2", "--workers", "0", "--out", str(out), "--device", "cpu"])
    assert code == 0 and (out / "metrics.json").is_file()
    detector, config = load_detector(out / "last.pt")
    assert config["model"] == model and "octave_base_scale" in config
    assert not detector.training


def test_first_run_help_version_and_defaults(capsys):
    import minidet

    assert main([]) == 0
    assert "predict" in capsys.readouterr().out  # bare `minidet` prints its help
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"minidet {minidet.__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--iters", "--lr", "--model", "--size", "--seed", "--crowd", "--init-from", "--checkpoint-every"):
        assert flag in text
    flags = [w for w in text.split() if w.startswith("--") and w != "--help"]
    assert text.count("(default:") >= len(set(flags)) - 2  # every flag's help shows its default


def test_help_of_the_package_is_short_and_points_to_the_docs():
    import pydoc

    import minidet

    text = pydoc.render_doc(minidet, renderer=pydoc.plaintext)
    assert "README" in text and "book" in text and "minidet.load" in text
    assert "with_traceback" not in text and len(text.splitlines()) < 150  # no inherited exception methods
    from minidet import DatasetError  # noqa: F401  (still importable)
