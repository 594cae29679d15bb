"""Trainer: learning-rate schedule, exact resume, non-finite losses, history and checkpoints."""
import json

import pytest
import torch

from minidet.data import CocoDetection, build_transforms
from minidet.engine import TrainConfig, Trainer, build_loader, load_checkpoint, lr_factor, save_checkpoint
from minidet.engine.history import History
from minidet.errors import CheckpointError, ConfigError, NonFiniteLossError
from minidet.models import build_retinanet


def make_trainer(tiny_shapes, out_dir, iters=6, **cfg):
    torch.manual_seed(0)
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(True, 96), seed=0)
    loader = build_loader(ds, batch_size=4, train=True, seed=0)
    model = build_retinanet(ds.num_classes, backbone="tiny", octave_base_scale=2.0)
    config = TrainConfig(iters=iters, optimizer="sgd", lr=0.01, warmup_iters=2, log_interval=2, checkpoint_interval=3, **cfg)
    return Trainer(model, loader, config, out_dir=out_dir, device="cpu")


def test_lr_schedule_shapes():
    assert lr_factor(0, 100, warmup_iters=10, warmup_factor=0.1) == pytest.approx(0.1)
    assert lr_factor(10, 100, warmup_iters=10) == pytest.approx(1.0)
    assert lr_factor(100, 100, warmup_iters=10) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(55, 100, warmup_iters=10) == pytest.approx(0.5)
    assert lr_factor(70, 100, warmup_iters=0, schedule="step", steps=(0.67, 0.89)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, schedule="linear")


class Crash(Exception):
    pass


def test_resume_is_bitwise_identical(tiny_shapes, tmp_path):
    full = make_trainer(tiny_shapes, tmp_path / "full")
    full.fit(progress=False)
    # An interrupted run: a crash at iteration 4, after the checkpoint written at iteration 3.
    part = make_trainer(tiny_shapes, tmp_path / "part")

    def crash(trainer, rows):
        if trainer.iteration == 4:
            raise Crash

    part.callbacks.append(crash)
    with pytest.raises(Crash):
        part.fit(progress=False)
    assert load_checkpoint(tmp_path / "part" / "last.pt")["iteration"] == 3
    resumed = make_trainer(tiny_shapes, tmp_path / "part")
    resumed.fit(progress=False)  # finds last.pt and continues from iteration 3
    assert resumed.iteration == 6
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [r["loss"] for r in full.history.rows] == [r["loss"] for r in resumed.history.rows]
    saved = json.loads((tmp_path / "full" / "history.json").read_text())
    assert len(saved) == 6 and {"iter", "lr", "loss_cls", "loss_box", "levels/loss_cls"} <= set(saved[0])


def test_resume_with_other_iters_is_refused(tiny_shapes, tmp_path):
    make_trainer(tiny_shapes, tmp_path / "r", iters=2).fit(progress=False)
    with pytest.raises(CheckpointError, match="iters=2.*iters=6"):
        make_trainer(tiny_shapes, tmp_path / "r", iters=6).fit(progress=False)


def test_resume_refuses_other_model_and_truncated_file(tiny_shapes, tmp_path):
    t = make_trainer(tiny_shapes, tmp_path / "a", iters=2)
    t.fit(progress=False)
    other = Trainer(build_retinanet(2, backbone="tiny"), t.loader, TrainConfig(iters=2), device="cpu")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        other.resume(tmp_path / "a" / "last.pt")
    data = (tmp_path / "a" / "last.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        t.resume(tmp_path / "trunc.pt")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.zeros(2)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_nonfinite_loss_stops_with_a_message(tiny_shapes, tmp_path):
    t = make_trainer(tiny_shapes, tmp_path / "nan", iters=6)
    with torch.no_grad():
        t.model.head.box_pred.bias.fill_(float("nan"))
    before = {k: v.clone() for k, v in t.model.named_parameters()}
    with pytest.raises(NonFiniteLossError, match=r"loss_box is nan at iteration 0.*Last good checkpoint: none"):
        t.fit(progress=False)
    for k, v in t.model.named_parameters():  # no optimiser step was taken (batch-norm statistics may move)
        assert torch.equal(v, before[k]) or torch.isnan(before[k]).any(), k


def test_nonfinite_loss_can_skip_steps(tiny_shapes, tmp_path):
    t = make_trainer(tiny_shapes, tmp_path / "skip", iters=2, on_nonfinite="skip")
    with torch.no_grad():
        t.model.head.box_pred.bias.fill_(float("inf"))
    t.fit(progress=False)
    assert t.skipped_steps == 2 and t.iteration == 2


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lion").validate()
    with pytest.raises(ConfigError, match="iters"):
        TrainConfig(iters=0).validate()


def test_history_flushes_in_windows():
    h = History()
    for i in range(5):
        h.record(i + 1, 0.1, {"loss": torch.tensor(float(i)), "levels/x": torch.tensor([i, 2.0 * i])})
    assert h.rows == [] and len(h) == 5
    rows = h.flush()
    assert [r["loss"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[2]["levels/x"] == [2.0, 4.0]
    assert h.smoothed("loss", window=2) == [0.0, 0.5, 1.5, 2.5, 3.5]


def test_channels_last_gives_the_same_losses(tiny_shapes, tmp_path):
    """channels_last is a memory layout, not a different model: the first losses agree."""
    a = make_trainer(tiny_shapes, None, iters=2, amp=False)  # fp32: the layout alone differs
    b = make_trainer(tiny_shapes, None, iters=2, channels_last=True, amp=False)
    a.fit(progress=False)
    b.fit(progress=False)
    assert b.model.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for ra, rb in zip(a.history.rows, b.history.rows):
        assert ra["loss_cls"] == pytest.approx(rb["loss_cls"], rel=1e-4)
        assert ra["loss_box"] == pytest.approx(rb["loss_box"], rel=1e-4)


def test_snapshots_are_kept(tiny_shapes, tmp_path):
    t = make_trainer(tiny_shapes, tmp_path / "snap", iters=4, snapshot_iters=(1, 3))
    t.fit(progress=False)
    assert load_checkpoint(tmp_path / "snap" / "iter_1.pt")["iteration"] == 1
    assert load_checkpoint(tmp_path / "snap" / "iter_3.pt")["iteration"] == 3
    assert load_checkpoint(tmp_path / "snap" / "last.pt")["iteration"] == 4


def test_seeded_runs_are_bitwise_reproducible_on_cpu(tiny_shapes, tmp_path):
    a = make_trainer(tiny_shapes, None, iters=4)
    b = make_trainer(tiny_shapes, None, iters=4)
    a.fit(progress=False)
    b.fit(progress=False)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), k
    assert [r["loss"] for r in a.history.rows] == [r["loss"] for r in b.history.rows]


def _fixed_batch(tiny_shapes):
    from minidet.data import collate_detection

    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(False, 96))
    return collate_detection([ds[i] for i in range(4)])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_skipped_step_leaves_weights_and_optimizer_state_as_they_were(tiny_shapes, optimizer):
    """The non-finite flag stays on the device and the fused optimiser skips on it: after a skipped first
    step and a good one, the weights equal those of the good step alone (bitwise)."""
    batch = _fixed_batch(tiny_shapes)

    def trainer():
        torch.manual_seed(0)
        model = build_retinanet(6, backbone="tiny", octave_base_scale=2.0)
        t = Trainer(model, None, TrainConfig(iters=2, optimizer=optimizer, on_nonfinite="skip"), device="cpu")
        assert t.optimizer.defaults["fused"]  # the fused kernels exist on CPU too
        return t

    poisoned, clean = trainer(), trainer()
    start = {k: v.clone() for k, v in poisoned.model.named_parameters()}
    hook = poisoned.model.register_forward_hook(lambda m, i, out: {**out, "loss_box": out["loss_box"] * float("nan")})
    out = poisoned.train_step(batch)
    hook.remove()
    assert out["skipped"].item() == 1.0 and torch.isnan(out["loss"])
    for k, v in poisoned.model.named_parameters():
        assert torch.equal(v, start[k]), k
    for state in poisoned.optimizer.state.values():  # zero or untouched, never uninitialised memory
        assert all(torch.count_nonzero(v) == 0 for k, v in state.items() if k != "step"), state.keys()
    assert poisoned.train_step(batch)["skipped"].item() == 0.0
    clean.train_step(batch)
    for (k, a), b in zip(poisoned.model.named_parameters(), clean.model.parameters()):
        assert torch.equal(a, b), k


def test_nan_gradient_behind_a_finite_loss_is_caught(tiny_shapes, tmp_path):
    """A finite loss with a NaN gradient (e.g. a clamped log whose input rounded to 0 or 1) must not reach the
    weights either: the step checks the gradient norm on the device, and the message says what was seen."""
    batch = _fixed_batch(tiny_shapes)
    torch.manual_seed(0)
    t = Trainer(build_retinanet(6, backbone="tiny", octave_base_scale=2.0), None,
                TrainConfig(iters=2, on_nonfinite="skip", grad_clip=None), device="cpu")
    start = {k: v.clone() for k, v in t.model.named_parameters()}
    handle = t.model.head.cls_logits.bias.register_hook(lambda g: g * float("nan"))
    out = t.train_step(batch)
    assert torch.isfinite(out["loss"]) and torch.isnan(out["grad_norm"]) and out["skipped"].item() == 1.0
    for k, v in t.model.named_parameters():
        assert torch.equal(v, start[k]), k
    handle.remove()
    assert t.train_step(batch)["skipped"].item() == 0.0

    t = make_trainer(tiny_shapes, tmp_path / "nan_grad", iters=4)
    t.model.head.cls_logits.bias.register_hook(lambda g: g * float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"the gradient norm is nan with a finite loss"):
        t.fit(progress=False)


def test_skipped_steps_are_counted_when_the_history_is_read(tiny_shapes, tmp_path):
    t = make_trainer(tiny_shapes, None, iters=4, on_nonfinite="skip")
    calls = {"n": 0}

    def every_other(module, inputs, out):
        calls["n"] += 1
        return {**out, "loss_cls": out["loss_cls"] * float("inf")} if calls["n"] % 2 else out

    t.model.register_forward_hook(every_other)
    t.fit(progress=False)
    assert t.skipped_steps == 2
    assert [r["skipped"] for r in t.history.rows] == [1.0, 0.0, 1.0, 0.0]


def test_max_seconds_stops_with_a_checkpoint_and_resumes(tiny_shapes, tmp_path):
    """A time-boxed run (``fit(max_seconds=...)``, ``minidet train --max-train-seconds``) stops after the step
    that crosses the limit, saves, and a later fit continues to ``iters``."""
    t = make_trainer(tiny_shapes, tmp_path / "boxed", iters=4)
    t.fit(progress=False, max_seconds=0.0)
    assert t.iteration == 1 and load_checkpoint(tmp_path / "boxed" / "last.pt")["iteration"] == 1
    again = make_trainer(tiny_shapes, tmp_path / "boxed", iters=4)
    again.fit(progress=False)
    assert again.iteration == 4
