"""CUDA variants (skipped without a GPU): the same code paths on the device, with AMP."""
import pytest
import torch

from minidet.data import CocoDetection, build_transforms, collate_detection
from minidet.engine import TrainConfig, Trainer, build_loader, evaluate
from minidet.losses import sigmoid_focal_loss
from minidet.models import build_atss, build_dw, build_fcos, build_retinanet

pytestmark = pytest.mark.cuda


def _batch(tiny_shapes, n=4):
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(False, 128))
    return ds, collate_detection([ds[i] for i in range(n)])


def test_focal_loss_cpu_equals_cuda(cuda_device):
    x = torch.randn(2, 100, 6, dtype=torch.float64)
    y = (torch.rand(2, 100, 6) > 0.9).double()
    torch.testing.assert_close(sigmoid_focal_loss(x.to(cuda_device), y.to(cuda_device)).cpu(), sigmoid_focal_loss(x, y))


def test_retinanet_losses_cpu_vs_cuda(tiny_shapes, cuda_device):
    _, batch = _batch(tiny_shapes)
    torch.manual_seed(0)
    model = build_retinanet(6, backbone="tiny", octave_base_scale=2.0).eval()
    model.training = True  # losses, with batch norm still using its running statistics on both devices
    cpu = model(batch.images, batch.targets, batch.image_sizes)
    gpu_model = model.to(cuda_device)
    b = batch.to(cuda_device)
    gpu = gpu_model(b.images, b.targets, b.image_sizes)
    for k in ("loss_cls", "loss_box"):
        torch.testing.assert_close(gpu[k].cpu(), cpu[k], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu["levels/num_pos"].cpu(), cpu["levels/num_pos"])


def test_train_step_with_bf16_autocast_and_inference(tiny_shapes, cuda_device, tmp_path):
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(True, 128))
    loader = build_loader(ds, 4, train=True, pin_memory=True)
    model = build_retinanet(ds.num_classes, backbone="tiny", octave_base_scale=2.0)
    trainer = Trainer(model, loader, TrainConfig(iters=3, amp=True, amp_dtype="bfloat16", warmup_iters=1), out_dir=tmp_path, device=cuda_device)
    history = trainer.fit(progress=False)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history.rows)
    val = CocoDetection(tiny_shapes["val"], tiny_shapes["val_images"], build_transforms(False, 128))
    metrics = evaluate(trainer.model, build_loader(val, 4, train=False), device=cuda_device)
    assert 0.0 <= metrics["AP"] <= 1.0


def test_resume_on_cuda(tiny_shapes, cuda_device, tmp_path):
    """A checkpoint written on CUDA resumes on CUDA: the saved RNG states must reach torch.set_rng_state as CPU
    ByteTensors whatever the checkpoint's map location, and the weights continue where they stopped."""
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(True, 128), seed=0)

    def trainer():
        torch.manual_seed(0)
        return Trainer(build_retinanet(ds.num_classes, backbone="tiny", octave_base_scale=2.0), build_loader(ds, 4, train=True, seed=0),
                       TrainConfig(iters=4, warmup_iters=1, checkpoint_interval=2, log_interval=1), out_dir=tmp_path, device=cuda_device)

    first = trainer()
    first.callbacks.append(lambda t, rows: (_ for _ in ()).throw(KeyboardInterrupt) if t.iteration == 3 else None)
    with pytest.raises(KeyboardInterrupt):
        first.fit(progress=False)
    again = trainer()
    again.fit(progress=False)  # resumes from last.pt (iteration 2)
    assert again.iteration == 4 and next(again.model.parameters()).is_cuda


def test_fp16_autocast_uses_grad_scaler(tiny_shapes, cuda_device, tmp_path):
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(True, 128))
    trainer = Trainer(build_retinanet(ds.num_classes), build_loader(ds, 4, train=True),
                      TrainConfig(iters=2, amp=True, amp_dtype="float16", warmup_iters=1), device=cuda_device)
    assert trainer.scaler.is_enabled()
    trainer.fit(progress=False)


SYNC_FREE_MODELS = {
    "retinanet": lambda c: build_retinanet(c, backbone="tiny", octave_base_scale=2.0),
    "umop": lambda c: build_retinanet(c, backbone="tiny", octave_base_scale=2.0, cls_loss="pfl", level_resampling=True),
    "atss": lambda c: build_atss(c, backbone="tiny"),
    "fcos": lambda c: build_fcos(c, backbone="tiny"),
    "dw": lambda c: build_dw(c, backbone="tiny"),
}


@pytest.mark.parametrize("name, optimizer, amp_dtype, channels_last", [
    ("retinanet", "sgd", "bfloat16", False), ("umop", "adamw", "bfloat16", True), ("atss", "adamw", "bfloat16", False),
    ("fcos", "adamw", "bfloat16", True), ("dw", "adamw", "bfloat16", False), ("retinanet", "adamw", "float16", False),
])
def test_training_step_has_no_host_sync(tiny_shapes, cuda_device, name, optimizer, amp_dtype, channels_last):
    """Forward, assignment, losses, backward, clipping, the fused optimiser (with its on-device skip of
    non-finite steps), the schedule and the history row: nothing waits for the GPU. The first step fills
    the caches (anchors, level indices) and is not checked; reading the history is the one sync, later."""
    ds, batch = _batch(tiny_shapes)
    batch = batch.to(cuda_device)
    model = SYNC_FREE_MODELS[name](ds.num_classes)
    cfg = TrainConfig(iters=3, optimizer=optimizer, amp=True, amp_dtype=amp_dtype, channels_last=channels_last, warmup_iters=1)
    trainer = Trainer(model, None, cfg, device=cuda_device)
    assert trainer.optimizer.defaults["fused"]
    trainer.model.train()
    trainer.advance(trainer.train_step(batch))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            trainer.advance(trainer.train_step(batch))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    rows = trainer._flush()
    assert len(rows) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) and r["skipped"] == 0.0 for r in rows)


def test_nonfinite_step_is_skipped_on_the_device(tiny_shapes, cuda_device):
    """A NaN loss under sync-debug "error": the step runs, the fused optimiser leaves the weights alone,
    and the host learns of it when it reads the history."""
    ds, batch = _batch(tiny_shapes)
    batch = batch.to(cuda_device)
    trainer = Trainer(build_retinanet(ds.num_classes, octave_base_scale=2.0), None,
                      TrainConfig(iters=2, optimizer="adamw", on_nonfinite="skip", warmup_iters=1), device=cuda_device)
    trainer.model.train()
    trainer.advance(trainer.train_step(batch))
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    trainer.model.register_forward_hook(lambda m, i, out: {**out, "loss_box": out["loss_box"] * float("nan")})
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.advance(trainer.train_step(batch))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer._flush()
    assert trainer.skipped_steps == 1
    for k, v in trainer.model.named_parameters():
        assert torch.equal(v, before[k]), k


def test_torchvision_weights_give_torchvision_detections_on_cuda(cuda_device):
    from test_models_torchvision_weights import SIZE, torchvision_model

    from minidet.models import from_torchvision

    tv = torchvision_model("fcos")
    model = from_torchvision(tv.state_dict()).to(cuda_device)
    tv = tv.to(cuda_device)
    images = torch.rand(2, 3, SIZE, SIZE, device=cuda_device)
    with torch.no_grad():
        for e, g in zip(tv(list(images)), model(images)):
            torch.testing.assert_close(g["scores"], e["scores"], rtol=1e-3, atol=1e-4)
            torch.testing.assert_close(g["boxes"], e["boxes"], rtol=1e-3, atol=1e-2)


def test_bench_runs_on_cuda_with_amp(cuda_device, capsys):
    import json

    from minidet.bench import main

    result = main(["--model", "fcos", "--device", str(cuda_device), "--size", "256", "--batch", "2", "--repeats", "2",
                   "--warmup", "1", "--amp", "--classes", "5"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    assert result["minidet_train_peak_mib"] > 0 and result["torchvision_train_peak_mib"] > 0
