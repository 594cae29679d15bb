"""Pretraining the tiny backbone by classification, as real detectors start from ImageNet.

The task is :mod:`minidet.data.shapes_crops`: 64 px crops of shapes scenes of their own seed, each labelled
with the class of the object it is centred on, or *background*. The model is :class:`TinyBackbone`, a global
average pool of ``c5`` and a linear classifier; only the backbone is kept, in fp16, for
``build_backbone("tiny", weights_path=...)`` (or ``minidet train --weights shapes-pretrained``)::

    python -m minidet.models.backbones.pretrain --out minidet/models/backbones/weights/tiny_shapes_cls.pt --steps 1500

The schedule is torch's (linear warm-up then cosine): ``minidet.engine.schedule.lr_factor`` would do the
same, but the models sit below the engine and never import it (``tests/test_layering.py``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from minidet.data.shapes import generate_shapes
from minidet.data.shapes_crops import CropConfig, Crops, crops_from_coco, pretrain_scenes
from minidet.errors import ConfigError, DatasetError
from minidet.models.backbones.tiny import PRETRAINED_TINY, TinyBackbone
from minidet.models.detectors.base import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class PretrainConfig:
    """AdamW with linear warm-up over ``warmup_frac`` of the ``steps`` then cosine decay to 0, as the
    detection recipe (lr 2e-3, weight decay 0.05, none on norms and biases); batches of ``batch_size`` crops,
    flipped at random; held-out accuracy every ``eval_every`` steps and at the end."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    warmup_factor: float = 1e-3  # the first step's lr / lr, as minidet.engine's warm-up
    eval_every: int = 100
    seed: int = 0
    channels_last: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PretrainConfig.{name} = {getattr(self, name)!r} must be >= 1")


class CropClassifier(nn.Module):
    """``TinyBackbone`` -> global average pool of ``c5`` -> linear: ``(B, 3, H, W)`` normalised -> ``(B, K)`` logits."""

    def __init__(self, num_classes: int, backbone: TinyBackbone | None = None) -> None:
        super().__init__()
        self.backbone = backbone or TinyBackbone()
        self.fc = nn.Linear(self.backbone.out_channels["c5"], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.backbone(x)["c5"].mean((2, 3)))  # (B, C5) -> (B, K)


def to_input(images: Tensor, channels_last: bool = True) -> Tensor:
    """``(B, 3, H, W)`` uint8 -> float normalised with the ImageNet statistics the detectors use."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    x = (images.float() / 255 - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def random_flips(x: Tensor, generator: torch.Generator) -> Tensor:
    """Flip each image of ``x`` (B, 3, H, W) left-right and, independently, upside down with probability 1/2
    (the shapes are drawn at uniform random angles, so a flipped shape is the same class)."""
    h, v = (torch.rand(2, x.shape[0], 1, 1, 1, generator=generator) < 0.5).to(x.device).unbind(0)
    x = torch.where(h, x.flip(3), x)
    return torch.where(v, x.flip(2), x)


@torch.no_grad()
def accuracy(net: CropClassifier, crops: Crops, batch_size: int = 256, channels_last: bool = True) -> dict[str, float]:
    """Top-1 accuracy of ``net`` (eval mode) on ``crops``: ``{"accuracy": ..., "<class name>": recall, ...}``."""
    was, device = net.training, net.fc.weight.device
    net.eval()
    pred = torch.cat([net(to_input(crops.images[i:i + batch_size].to(device), channels_last)).argmax(1).cpu()
                      for i in range(0, len(crops.labels), batch_size)])
    net.train(was)
    right = (pred == crops.labels).float()
    per_class = {name: right[crops.labels == k].mean().item() for k, name in enumerate(crops.class_names)
                 if (crops.labels == k).any()}
    return {"accuracy": right.mean().item(), **per_class}


def pretrain(train: Crops, heldout: Crops, cfg: PretrainConfig, device: str | torch.device = "cpu",
             progress: bool = True) -> tuple[CropClassifier, list[dict]]:
    """Train a :class:`CropClassifier` on ``train`` for ``cfg.steps`` steps on ``device`` (the crops stay on the
    CPU; each batch is copied over). Returns the model and its history:
    one row per evaluation ``{"step", "loss", "lr", "train_seconds", "seconds", "accuracy", <class>: recall}``: the
    mean training loss since the last row, the held-out accuracy and recall per class, the seconds spent on
    training steps alone and in all (evaluations included)."""
    for name, crops in (("train", train), ("held-out", heldout)):
        if len(crops.labels) == 0:
            raise DatasetError(f"pretrain: the {name} crops are empty (too few scenes?)")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = CropClassifier(len(train.class_names)).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]  # norms and biases, as minidet.engine's optimiser
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr)
    warmup = max(1, round(cfg.warmup_frac * cfg.steps))
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=cfg.warmup_factor, total_iters=warmup),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps - warmup))], milestones=[warmup])
    n, order, pos = len(train.labels), torch.randperm(len(train.labels), generator=gen), 0
    history, running, t0, eval_seconds = [], torch.zeros((), device=device), time.perf_counter(), 0.0
    bar = tqdm(range(1, cfg.steps + 1), desc="pretrain", disable=not progress, dynamic_ncols=True)
    for step in bar:
        if pos + cfg.batch_size > n:  # a new epoch: a new order
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        x = random_flips(to_input(train.images[idx].to(device, non_blocking=True), cfg.channels_last), gen)
        loss = F.cross_entropy(net(x), train.labels[idx].to(device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.detach()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            since = cfg.eval_every if step % cfg.eval_every == 0 else step % cfg.eval_every
            t_eval = time.perf_counter()
            row = {"step": step, "loss": (running / since).item(), "lr": opt.param_groups[0]["lr"],
                   "train_seconds": t_eval - t0 - eval_seconds, **accuracy(net, heldout, channels_last=cfg.channels_last)}
            eval_seconds += time.perf_counter() - t_eval
            row["seconds"] = time.perf_counter() - t0  # training and evaluations
            history.append(row)
            running.zero_()
            line = (f"step {step}/{cfg.steps}  loss {row['loss']:.3f}  held-out accuracy {row['accuracy']:.3f}  "
                    f"{row['train_seconds'] / step:.2f} s/step  {row['seconds']:.0f} s")
            tqdm.write(line)
    return net, history


def save_backbone(backbone: TinyBackbone, path: str | Path, meta: dict) -> int:
    """Write the backbone's state dict with floating tensors in fp16 to ``path`` and ``meta`` to ``path`` with
    suffix ``.json``; return the size of ``path`` in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if v.is_floating_point() else v).cpu() for k, v in backbone.state_dict().items()}
    torch.save(state, path)
    size = path.stat().st_size
    path.with_suffix(".json").write_text(json.dumps({**meta, "file_bytes": size}, indent=1))
    return size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidet.models.backbones.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help=f"backbone weights file to write, and its .json (the shipped one: {PRETRAINED_TINY})")
    p.add_argument("--steps", type=int, default=PretrainConfig.steps, help="training steps")
    p.add_argument("--crop", type=int, default=CropConfig.size, help="crop side in pixels")
    p.add_argument("--batch", type=int, default=PretrainConfig.batch_size, help="crops per step")
    p.add_argument("--lr", type=float, default=PretrainConfig.lr, help="peak learning rate")
    p.add_argument("--eval-every", type=int, default=PretrainConfig.eval_every, help="steps between held-out evaluations")
    p.add_argument("--seed", type=int, default=PretrainConfig.seed, help="seed of initialisation, order and flips")
    p.add_argument("--scenes", type=int, nargs=2, default=(1000, 200), metavar=("TRAIN", "HELDOUT"),
                   help="shapes scenes to cut crops from (train, held out)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--data-root", default="data/pretrain-shapes", help="where the scenes are generated (once)")
    p.add_argument("--no-progress", action="store_true", help="log lines only, no progress bar")
    args = p.parse_args(argv)
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, eval_every=args.eval_every, seed=args.seed)
    scenes, crop = pretrain_scenes(*args.scenes), CropConfig(size=args.crop)
    paths = generate_shapes(args.data_root, scenes, progress=not args.no_progress)
    t0 = time.perf_counter()
    train, heldout = (crops_from_coco(paths[s], paths[f"{s}_images"], crop) for s in ("train", "val"))
    print(f"crops: {len(train.labels)} train, {len(heldout.labels)} held out ({train.images.numel() / 1e6:.0f} MB uint8, "
          f"cut in {time.perf_counter() - t0:.0f} s); per class {dict(zip(train.class_names, train.labels.bincount().tolist()))}")
    net, history = pretrain(train, heldout, cfg, args.device, progress=not args.no_progress)
    meta = {"steps": cfg.steps, "accuracy": history[-1]["accuracy"], "seconds": history[-1]["seconds"],
            "seconds_per_step": history[-1]["train_seconds"] / cfg.steps, "threads": torch.get_num_threads(), "device": args.device,
            "command": " ".join(["python -m minidet.models.backbones.pretrain"] + (sys.argv[1:] if argv is None else argv)),
            "train": asdict(cfg), "crops": asdict(crop), "scenes": scenes.to_dict(), "num_train_crops": len(train.labels),
            "num_heldout_crops": len(heldout.labels), "class_names": train.class_names, "torch": torch.__version__,
            "history": history}
    size = save_backbone(net.backbone, args.out, meta)
    print(f"held-out accuracy {meta['accuracy']:.3f} after {cfg.steps} steps ({meta['seconds']:.0f} s); "
          f"wrote {args.out} ({size / 1e6:.1f} MB, fp16) and {Path(args.out).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
