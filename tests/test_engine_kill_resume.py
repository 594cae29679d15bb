"""A training process killed with SIGKILL resumes from its last checkpoint and ends bitwise identical
to an uninterrupted run with the same seed (CPU)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from minidet.data import CocoDetection, build_transforms
    from minidet.engine import TrainConfig, Trainer, build_loader
    from minidet.models import build_retinanet

    ann, images, out, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.manual_seed(0)
    ds = CocoDetection(ann, images, build_transforms(True, 96), seed=0)
    model = build_retinanet(ds.num_classes, backbone="tiny", octave_base_scale=2.0)
    cfg = TrainConfig(iters=8, optimizer="sgd", lr=0.01, warmup_iters=2, log_interval=1, checkpoint_interval=2)
    trainer = Trainer(model, build_loader(ds, 4, train=True, seed=0), cfg, out_dir=out, device="cpu")

    def kill(trainer, rows):
        if trainer.iteration == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)   # no clean-up, no flush: a real crash

    trainer.callbacks.append(kill)
    trainer.fit(progress=False)
""")


def _train(tiny_shapes, out, kill_at):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_shapes["train"]), str(tiny_shapes["train_images"]),
                           str(out), str(kill_at)], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tiny_shapes, tmp_path):
    ref = _train(tiny_shapes, tmp_path / "ref", kill_at=-1)
    assert ref.returncode == 0, ref.stderr
    crashed = _train(tiny_shapes, tmp_path / "run", kill_at=5)
    assert crashed.returncode == -signal.SIGKILL
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["iteration"] == 4
    resumed = _train(tiny_shapes, tmp_path / "run", kill_at=-1)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "ref" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert a["iteration"] == b["iteration"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ha = json.loads((tmp_path / "ref" / "history.json").read_text())
    hb = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    assert [r["iter"] for r in hb] == list(range(1, 9))
