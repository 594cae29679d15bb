"""Several processes: the sampler's shards, and DistributedDataParallel training that equals one process.

The gradient test launches two CPU processes with ``torchrun`` (gloo backend). Each trains one step on
its half of a fixed batch of 4 images; DDP averages their gradients. The reference is one process with
all 4 images. They agree because every loss normaliser is pooled over processes
(:func:`minidet.engine.distributed.loss_normalizer`): ``mean_p (S_p / (N / P)) = sum_p S_p / N``.
Batch norm keeps its running statistics in both (on CPU there is no SyncBatchNorm: per-process batch
statistics would differ from the whole batch's, which is what ``--sync-bn`` fixes on GPUs).
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from minidet.data.collate import ImageBatch
from minidet.engine import ResumableSampler, TrainConfig, Trainer
from minidet.models import build_atss, build_dw, build_fcos, build_retinanet

VARIANTS = {
    "retinanet": lambda: build_retinanet(3, backbone="tiny", octave_base_scale=2.0),
    "umop": lambda: build_retinanet(3, backbone="tiny", octave_base_scale=2.0, cls_loss="pfl", level_resampling=True),
    "atss": lambda: build_atss(3, backbone="tiny", octave_base_scale=4.0),
    "fcos": lambda: build_fcos(3, backbone="tiny"),
    "dw": lambda: build_dw(3, backbone="tiny"),
}


def fixed_batch(indices=range(4)) -> ImageBatch:
    """4 images of 128 px with 1 to 4 boxes each (the same on every process), and a selection of them."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 128, 128, generator=g)
    targets = []
    for n in (3, 1, 4, 2):
        xy = torch.rand(n, 2, generator=g) * 80
        wh = torch.rand(n, 2, generator=g) * 60 + 12
        targets.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=128)], 1), "labels": torch.randint(0, 3, (n,), generator=g)})
    idx = list(indices)
    return ImageBatch(images[idx], torch.tensor([[128, 128]] * len(idx)), [targets[i] for i in idx])


def one_step_grads(name: str, batch: ImageBatch) -> dict[str, torch.Tensor]:
    """Gradients of one Trainer step (SGD, no clipping, no AMP) with batch norm on running statistics."""
    torch.manual_seed(0)
    model = VARIANTS[name]()
    trainer = Trainer(model, None, TrainConfig(iters=1, grad_clip=None, amp=False, warmup_iters=0), device="cpu")
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    out = trainer.train_step(batch)
    assert torch.isfinite(out["loss"])
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


WORKER = textwrap.dedent("""
    import sys, torch, torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    torch.set_num_threads(1)
    from test_engine_distributed import VARIANTS, fixed_batch, one_step_grads
    from minidet.engine.distributed import init_distributed, rank, world_size
    assert str(init_distributed()) == "cpu" and dist.get_backend() == "gloo" and world_size() == 2
    r = rank()
    grads = {name: one_step_grads(name, fixed_batch(range(2 * r, 2 * r + 2))) for name in VARIANTS}
    torch.save(grads, f"{sys.argv[1]}/grads_{r}.pt")
""")


@pytest.mark.slow
def test_two_processes_give_the_gradients_of_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
                           str(tmp_path), os.path.dirname(__file__)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"grads_{r}.pt", weights_only=True) for r in (0, 1)]
    for name in VARIANTS:
        ref = one_step_grads(name, fixed_batch())
        assert set(ranks[0][name]) == set(ref), name
        for k, g in ref.items():
            assert torch.equal(ranks[0][name][k], ranks[1][name][k]), (name, k)  # DDP: one gradient everywhere
            torch.testing.assert_close(ranks[0][name][k], g, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name} {k}: {m}")


@pytest.mark.parametrize("length, world", [(10, 3), (12, 4), (5, 2), (7, 1)])
def test_shards_cover_the_data_equally_and_deterministically(length, world):
    shards = [list(ResumableSampler(length, seed=4, rank=r, world=world)) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == len(ResumableSampler(length, rank=r, world=world))
                                                      for r, s in enumerate(shards))
    flat = [i for s in shards for i in s]
    assert sorted(set(flat)) == list(range(length))  # everything is seen
    assert len(flat) - length == (-length) % world  # only the padding repeats
    assert shards == [list(ResumableSampler(length, seed=4, rank=r, world=world)) for r in range(world)]
    if world == 1:  # one process: the plain permutation of the epoch
        assert shards[0] == torch.randperm(length, generator=torch.Generator().manual_seed(4)).tolist()


def test_shards_resume_mid_epoch_and_change_with_the_epoch():
    s = ResumableSampler(11, seed=1, rank=1, world=2)
    s.set_epoch(3)
    whole = list(s)
    s.set_epoch(3, start=4)
    assert list(s) == whole[4:] and len(s) == len(whole) - 4
    s.set_epoch(4)
    assert list(s) != whole
    with pytest.raises(ValueError, match="rank 2"):
        ResumableSampler(4, rank=2, world=2)


@pytest.mark.slow
def test_torchrun_cli_trains_with_two_processes(tiny_shapes, tmp_path):
    """``torchrun -m minidet train``: one log, one checkpoint and one evaluation, written by rank 0."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "minidet",
                           "train", "--data", str(tiny_shapes["root"]), "--iters", "2", "--size", "64", "--batch", "2",
                           "--workers", "0", "--device", "cpu", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("minidet: training") == 1 and proc.stdout.count("COCO bbox metrics") == 1
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 2
    assert (out / "metrics.json").is_file()


def test_trainer_wraps_in_ddp_and_refuses_sync_bn_on_cpu(tmp_path):
    """A one-process gloo group: the step goes through DistributedDataParallel, checkpoints keep plain keys."""
    import torch.distributed as dist

    from minidet.errors import ConfigError

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        trainer = Trainer(VARIANTS["retinanet"](), None, TrainConfig(iters=1, amp=False), device="cpu")
        assert isinstance(trainer.net, nn.parallel.DistributedDataParallel) and trainer.net.module is trainer.model
        assert torch.isfinite(trainer.train_step(fixed_batch())["loss"])
        assert not any(k.startswith("module.") for k in trainer.state_dict()["model"])
        with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
            Trainer(VARIANTS["retinanet"](), None, TrainConfig(iters=1, sync_bn=True), device="cpu")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("staggered", [True, False])
def test_mimicdet_steps_under_ddp_without_unused_parameters(tmp_path, staggered):
    """DDP runs with ``find_unused_parameters=False``: a parameter that gets no gradient makes the next step
    fail. ``MimicDet(staggered=False)`` never computes P2, so its P2 convolutions must not count as trainable."""
    import torch.distributed as dist

    from minidet.models import build_mimicdet

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = build_mimicdet(3, anchor_scale=2.0, num_rois=32, staggered=staggered)
        trainer = Trainer(model, None, TrainConfig(iters=2, amp=False), device="cpu")
        for _ in range(2):
            assert torch.isfinite(trainer.train_step(fixed_batch())["loss"])
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    finally:
        dist.destroy_process_group()
