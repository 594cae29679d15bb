"""Fine-tuning: ``minidet train --init-from`` starts from another run's weights, on a dataset with other classes."""
from __future__ import annotations

import math

import pytest
import torch

from minidet.cli import main
from minidet.data import ShapesConfig, generate_shapes
from minidet.engine.checkpoint import load_checkpoint
from minidet.engine.experiment import build_model, init_from_checkpoint
from minidet.errors import ConfigError


@pytest.fixture(scope="module")
def other_classes(tmp_path_factory):
    """A 3-class shapes dataset whose classes the 6-class checkpoint never saw."""
    root = tmp_path_factory.mktemp("other")
    generate_shapes(root, ShapesConfig(image_size=96, num_train=8, num_val=4, max_objects=4, seed=7,
                                       classes=("pentagon", "diamond", "arrow")), workers=1, progress=False)
    return root


def test_only_the_classifier_output_is_reinitialised(tiny_checkpoint):
    state = load_checkpoint(tiny_checkpoint)["model"]
    torch.manual_seed(0)
    model = build_model("retinanet", 3, octave_base_scale=2.0)
    loaded, skipped = init_from_checkpoint(model, tiny_checkpoint, "retinanet", verbose=False)
    assert sorted(s.split(":")[0] for s in skipped) == ["head.cls_logits.bias", "head.cls_logits.weight"]
    own = model.state_dict()
    assert len(loaded) == len(own) - 2 and all(torch.equal(own[k], state[k]) for k in loaded)
    prior = -math.log((1 - 0.01) / 0.01)  # RetinaNet's prior-probability bias (Sec. 4), not the checkpoint's
    assert torch.allclose(own["head.cls_logits.bias"], torch.full((27,), prior))
    with pytest.raises(ConfigError, match="pass --model retinanet"):
        init_from_checkpoint(build_model("fcos", 3), tiny_checkpoint, "fcos")


def test_cli_fine_tunes_and_reports(tiny_checkpoint, other_classes, tmp_path, capsys):
    out = tmp_path / "ft"
    code = main(["train", "--data", str(other_classes), "--init-from", str(tiny_checkpoint), "--iters", "2", "--size", "96",
                 "--batch", "4", "--workers", "0", "--out", str(out), "--device", "cpu", "--anchor-scale", "2"])
    text = capsys.readouterr().out
    assert code == 0
    assert f"init from {tiny_checkpoint}: loaded" in text and "backbone." in text
    assert "not loaded: head.cls_logits.weight: checkpoint (54, 64, 3, 3) vs model (27, 64, 3, 3)" in text
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["model_config"]["class_names"] == ["pentagon", "diamond", "arrow"] and ckpt["iteration"] == 2
