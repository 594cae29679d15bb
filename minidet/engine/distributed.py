"""torch.distributed for minidet's engine: start-up under ``torchrun``, tear-down and barriers.

    torchrun --nproc_per_node=4 -m minidet train --model fcos ...

Each process trains on its own share of every batch (:class:`~minidet.engine.loader.ResumableSampler`)
with :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients. The reductions the
losses use (:func:`loss_normalizer`, :func:`all_reduce_sum`, :func:`all_reduce_mean`) live one layer down
in :mod:`minidet.distributed`, so that losses and models need not import the engine; they are re-exported
here for the engine's callers.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from minidet.distributed import all_reduce_mean, all_reduce_sum, is_dist, loss_normalizer, rank, world_size

__all__ = ["all_reduce_mean", "all_reduce_sum", "barrier", "destroy_distributed", "init_distributed", "is_dist",
           "launched_by_torchrun", "loss_normalizer", "rank", "world_size"]


def launched_by_torchrun() -> bool:
    """True in a process started by ``torchrun`` (or any launcher that sets ``WORLD_SIZE`` and ``RANK``)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | None = None) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment and return this process's
    device: ``cuda:LOCAL_RANK`` with the ``nccl`` backend when CUDA is present (and ``device`` does not
    say ``cpu``), else the CPU with ``gloo``. Outside ``torchrun`` it only resolves ``device``."""
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if not launched_by_torchrun():
        return torch.device(device or ("cuda" if use_cuda else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not is_dist():
        dist.init_process_group("nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return dev


def destroy_distributed() -> None:
    if is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()
