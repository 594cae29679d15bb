"""The training loop: optimiser, warm-up + decay, gradient clipping, AMP, history, checkpoints, resume.

>>> trainer = Trainer(model, train_loader, TrainConfig(iters=2000), out_dir="runs/retinanet")
>>> history = trainer.fit()          # resumes from runs/retinanet/last.pt when it exists
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from minidet.engine.checkpoint import load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state
from minidet.engine.distributed import all_reduce_sum, is_dist, rank
from minidet.engine.history import History
from minidet.engine.precision import AMP_DTYPES, autocast, autocast_dtype, describe, guard_narrow_strided_convs
from minidet.engine.schedule import lr_factor
from minidet.errors import CheckpointError, ConfigError, NonFiniteLossError


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved in every checkpoint).

    ``lr`` is the base learning rate for ``batch_size`` images; ``grad_clip`` is a max gradient norm
    (``None``: off); ``amp`` turns on autocast where it pays (:func:`minidet.engine.precision.autocast_dtype`):
    on CUDA in ``amp_dtype`` (``"bfloat16"``, or ``"float16"`` with a gradient scaler), on a CPU in bf16 when
    the CPU has native bf16 (AVX512-BF16/AMX), else fp32; ``amp=False`` is plain fp32. ``channels_last`` stores the model and images
    NHWC, which made the tiny backbone's training step 19 % faster on 2 CPU cores (see README).
    ``snapshot_iters`` keeps extra checkpoints ``iter_<n>.pt`` at those iterations (to look at a model at
    several moments of training; ``last.pt`` is always the latest). A step whose loss is not finite never
    updates the weights; the host learns of it when it reads the history (every ``log_interval`` steps and
    before each checkpoint, so that the step itself needs no synchronisation), and ``on_nonfinite`` then
    says what to do: ``"raise"`` (stop with a message naming the loss component, its iteration and the last
    checkpoint) or ``"skip"`` (count it and go on).
    Under ``torch.distributed`` the model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`;
    ``sync_bn`` then turns its batch norms into :class:`~torch.nn.SyncBatchNorm` (statistics over the global
    batch; CUDA only).
    """

    iters: int = 2000
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    warmup_factor: float = 0.001
    schedule: str = "cosine"
    steps: tuple[float, ...] = (0.67, 0.89)
    grad_clip: float | None = 10.0
    amp: bool = True
    amp_dtype: str = "bfloat16"
    log_interval: int = 20
    checkpoint_interval: int = 500
    seed: int = 0
    on_nonfinite: str = "raise"
    channels_last: bool = False
    snapshot_iters: tuple[int, ...] = ()
    sync_bn: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.iters <= 0:
            raise ConfigError(f"iters must be positive, got {self.iters}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.on_nonfinite not in ("raise", "skip"):
            raise ConfigError(f"on_nonfinite must be 'raise' or 'skip', got {self.on_nonfinite!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"amp_dtype must be one of {tuple(AMP_DTYPES)}, got {self.amp_dtype!r}")
        lr_factor(0, self.iters, schedule=self.schedule)  # raises on an unknown schedule


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; no weight decay on norm layers and biases (1-D parameters).

    The fused implementation when the parameters' device has one: it reads ``optimizer.found_inf`` (a 0-d
    float tensor) on the device and leaves parameters and state untouched when it is non-zero, which is
    how :meth:`Trainer.train_step` skips a non-finite step without a host synchronisation. SGD's
    momentum buffers start at zero rather than lazily: a skipped first step would otherwise leave the
    fused kernel's uninitialised buffers in place (``momentum * 0 + g`` equals the lazy ``g`` exactly)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def make(fused: bool | None) -> torch.optim.Optimizer:
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, fused=fused)

    try:
        opt = make(True)
    except RuntimeError:  # no fused kernel for this device or dtype: torch's default implementation
        opt = make(None)
    if cfg.optimizer == "sgd" and cfg.momentum:
        for p in decay + no_decay:
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
    return opt


class Trainer:
    """Iteration-based trainer for any minidet detector (``model(images, targets)`` -> loss dict).

    Args:
        model: a detector; it is moved to ``device``.
        loader: a loader built by :func:`minidet.engine.loader.build_loader` (its sampler is resumable).
        config: :class:`TrainConfig`.
        out_dir: where ``last.pt`` (and ``history.json``) go; ``None`` keeps everything in memory.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when present).
        model_config: how to rebuild the model (stored in checkpoints, e.g. for ``minidet eval``).
        callbacks: called as ``fn(trainer, new_history_rows)`` after each flush of the history.
    """

    def __init__(self, model: nn.Module, loader: DataLoader, config: TrainConfig, out_dir: str | Path | None = None,
                 device: str | torch.device | None = None, model_config: dict[str, Any] | None = None,
                 callbacks: list[Callable[["Trainer", list[dict]], None]] | None = None) -> None:
        config.validate()
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.sync_bn and is_dist():
            if self.device.type != "cuda":
                raise ConfigError(f"sync_bn needs CUDA: torch's SyncBatchNorm has no {self.device.type} implementation")
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # ``self.model`` is the detector itself (checkpoints, evaluation); ``self.net`` is what a step calls.
        self.net: nn.Module = self.model
        if is_dist():
            on_cuda = self.device.type == "cuda"
            index = self.device.index if self.device.index is not None else (torch.cuda.current_device() if on_cuda else None)
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=[index] if on_cuda else None)
        self.loader, self.config = loader, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.model_config = model_config or {}
        self.callbacks = callbacks or []
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda it: lr_factor(it, config.iters, config.warmup_iters, config.warmup_factor, config.schedule, config.steps),
        )
        self.amp_dtype = autocast_dtype(self.device, config.amp, config.amp_dtype)  # None: fp32
        if self.amp_dtype is not None and self.device.type == "cpu":
            guard_narrow_strided_convs(self.model)  # a oneDNN bf16 defect (minidet.engine.precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda")
        self.iteration = 0
        self.history = History()
        self.skipped_steps = 0
        self.last_checkpoint: Path | None = None

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        self._flush()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "iteration": self.iteration,
            "config": json.loads(json.dumps(dataclasses.asdict(self.config))),
            "model_config": self.model_config,
            "history": self.history.rows,
            "skipped_steps": self.skipped_steps,
        }

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint (rank 0 only); default ``<out_dir>/last.pt``."""
        if rank() != 0:
            return None
        if path is None:
            if self.out_dir is None:
                return None
            path = self.out_dir / "last.pt"
        self.last_checkpoint = save_checkpoint(self.state_dict(), path)
        return self.last_checkpoint

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped (model, optimiser, schedule,
        scaler, random states, iteration and history)."""
        # on the CPU: load_state_dict copies weights and optimiser state to their parameters' device, and the
        # saved random states must stay CPU ByteTensors (torch.set_rng_state refuses CUDA tensors)
        state = load_checkpoint(path, map_location="cpu")
        load_model_state(self.model, state["model"], str(path))
        if state["config"].get("iters") != self.config.iters:
            raise CheckpointError(
                f"{path} was made for iters={state['config'].get('iters')}, this run has iters={self.config.iters}: "
                "the learning-rate schedule would differ; use the same --iters or a new --out"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.history = History(state["history"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.last_checkpoint = Path(path)

    # ----------------------------------------------------------------- training
    def _batches(self):
        """Endless batches, starting at the current iteration's position in its epoch."""
        per_epoch = len(self.loader)
        if per_epoch == 0:
            raise ConfigError("the training loader yields no batch: the dataset is smaller than the batch size")
        epoch, offset = divmod(self.iteration, per_epoch)
        sampler, dataset = self.loader.sampler, self.loader.dataset
        while True:
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch, offset * self.loader.batch_size)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            yield from self.loader
            epoch, offset = epoch + 1, 0

    def train_step(self, batch) -> dict[str, Tensor]:
        """One optimisation step on ``batch`` (an :class:`~minidet.data.collate.ImageBatch`), without a host
        synchronisation when the optimiser is fused (:func:`build_optimizer`).

        A non-finite loss or gradient must never reach the weights. A finite loss can still have NaN
        gradients (a clamped ``log`` whose input rounded to 0 has gradient ``0 * inf``), so the step checks
        both: ``skipped`` is 1, on the device, when the total loss or the gradient norm of any process is NaN
        or infinite, and goes to the fused optimiser as ``found_inf``: parameters and optimiser state then
        stay as they were. With float16 the gradient scaler checks the gradients itself (an overflow there is
        routine: it lowers its scale), so only the loss is checked, and a non-finite loss multiplies the
        backward loss by NaN so that the scaler skips the step. The host reads ``skipped`` with the losses
        when the history is flushed (:meth:`_flush`, every ``log_interval`` steps), where ``on_nonfinite``
        acts. Without a fused kernel for the device the flag is read at once: one synchronisation per step.

        Returns the model's loss dict plus ``loss`` (the total), ``grad_norm`` (before clipping) and
        ``skipped`` (0-d, on the device).
        """
        batch = batch.to(self.device, non_blocking=True)
        if self.config.channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp_dtype):
            out = self.net(batch.images, batch.targets, batch.image_sizes)
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        bad_loss = ~torch.isfinite(total.detach())
        out["loss"] = total.detach()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            total = total * torch.where(bad_loss, torch.nan, 1.0)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.config.grad_clip:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        bad = bad_loss if self.scaler.is_enabled() else bad_loss | ~torch.isfinite(grad_norm)
        # every process must skip together, or their weights part: pool the flag (a no-op in one process)
        skipped = all_reduce_sum(bad.float()).clamp(max=1.0)
        out["grad_norm"], out["skipped"] = grad_norm.detach(), skipped
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # a fused optimiser gets the scaler's found_inf on the device
        elif self.optimizer.defaults.get("fused"):
            self.optimizer.found_inf = skipped
            self.optimizer.step()
            del self.optimizer.found_inf
        elif not bool(skipped):  # no fused kernel: the host decides
            self.optimizer.step()
        self.scaler.update()
        return out

    def advance(self, out: dict[str, Tensor]) -> None:
        """After a step: learning-rate schedule, iteration count, history row (no host synchronisation)."""
        lr = self.optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():  # a skipped (non-finite) step still advances the schedule
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()
        self.iteration += 1
        self.history.record(self.iteration, lr, {k: v for k, v in out.items() if k.startswith(("loss", "levels/", "stats/", "skipped", "grad_norm"))})

    def _flush(self) -> list[dict[str, Any]]:
        """Copy the pending history rows to the host (the one synchronisation, every ``log_interval`` steps
        and before a checkpoint) and act on skipped steps: count them, or raise (``on_nonfinite="raise"``)."""
        rows = self.history.flush()
        bad = [r for r in rows if r.get("skipped")]
        if bad and self.config.on_nonfinite == "raise":
            row = bad[0]
            names = [k for k, v in row.items() if k.startswith("loss") and isinstance(v, float) and not math.isfinite(v)]
            name = next((k for k in names if k.startswith("loss_")), names[0] if names else None)
            if name:
                what = f"{name} is {row[name]}"
            elif not math.isfinite(row.get("grad_norm", 0.0)):
                what = f"the gradient norm is {row['grad_norm']} with a finite loss ({row.get('loss')})"
            else:
                what = "the loss or gradient of another process is not finite"
            where = str(self.last_checkpoint) if self.last_checkpoint else "none saved yet"
            raise NonFiniteLossError(
                f"{what} at iteration {row['iter'] - 1}; that step did not update the weights (seen at iteration "
                f"{self.iteration}, when the history was read). Last good checkpoint: {where}. Lower the learning "
                "rate, check the data, or train with on_nonfinite='skip'."
            )
        self.skipped_steps += len(bad)
        return rows

    def fit(self, progress: bool = True, max_seconds: float | None = None) -> History:
        """Train until ``config.iters``; resumes from ``<out_dir>/last.pt`` if present. Returns the history.

        ``max_seconds``: stop after this much training time (at the end of a step), with a checkpoint, so a
        time-boxed run (the GPU check) can be evaluated and later resumed; the schedule stays that of ``iters``."""
        cfg = self.config
        if self.iteration == 0 and self.out_dir is not None and (self.out_dir / "last.pt").is_file():
            self.resume(self.out_dir / "last.pt")
        self.fit_start_iteration = self.iteration  # after a resume: the steps this call trains start here
        if self.iteration >= cfg.iters:
            return self.history
        if self.iteration == 0:
            torch.manual_seed(cfg.seed)
        self.model.train()
        if progress and rank() == 0:
            print(f"minidet: precision {describe(self.device, self.amp_dtype)}", flush=True)
        bar = tqdm(total=cfg.iters, initial=self.iteration, disable=not progress or rank() != 0, desc="train", dynamic_ncols=True)
        start = time.perf_counter()
        for batch in self._batches():
            self.advance(self.train_step(batch))
            bar.update(1)
            if self.iteration % cfg.log_interval == 0 or self.iteration == cfg.iters:
                rows = self._flush()
                last = rows[-1]
                bar.set_postfix({k: f"{v:.3f}" for k, v in last.items() if k.startswith("loss") and isinstance(v, float)}, refresh=False)
                for cb in self.callbacks:
                    cb(self, rows)
            if cfg.checkpoint_interval and self.iteration % cfg.checkpoint_interval == 0:
                self.save()
            if self.iteration in cfg.snapshot_iters and self.out_dir is not None:
                self.save(self.out_dir / f"iter_{self.iteration}.pt")
            if self.iteration >= cfg.iters:
                break
            if max_seconds is not None and time.perf_counter() - start >= max_seconds:
                if rank() == 0:
                    tqdm.write(f"minidet: stopping at iteration {self.iteration} of {cfg.iters}: {max_seconds:g} s of training reached")
                break
        bar.close()
        self.train_seconds = time.perf_counter() - start
        self.save()
        if self.out_dir is not None and rank() == 0:
            (self.out_dir / "history.json").write_text(json.dumps(self.history.rows))
        return self.history
