"""CUDA variants (skipped without a GPU): the same code paths on the device, with AMP."""
import pytest
import torch

from minidet.data import CocoDetection, build_transforms, collate_detection
from minidet.engine import TrainConfig, Trainer, build_loader, evaluate
from minidet.losses import sigmoid_focal_loss
from minidet.models import build_retinanet

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


def test_fp16_autocast_uses_grad_scaler(tiny_shapes, cuda_device, tmp_path):
    ds = CocoDetection(tiny_shapes["train"], tiny_shapes["train_images"], build_transforms(True, 128))
    trainer = Trainer(build_retinanet(ds.num_classes), build_loader(ds, 4, train=True),
                      TrainConfig(iters=2, amp=True, amp_dtype="float16", warmup_iters=1), device=cuda_device)
    assert trainer.scaler.is_enabled()
    trainer.fit(progress=False)
