"""Data loading that can resume mid-epoch exactly.

:class:`ResumableSampler` draws the order of epoch ``e`` from ``seed + e`` alone, and can start at any
position, so a run restarted at iteration ``i`` sees exactly the batches it would have seen. Under
``torch.distributed`` each process takes every ``world_size``-th index of the same permutation.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from minidet.data.collate import collate_detection
from minidet.engine.distributed import rank, world_size


class ResumableSampler(Sampler[int]):
    """Shuffled (or sequential) indices, reproducible per epoch, startable at any offset.

    Args:
        length: dataset size.
        shuffle: permute each epoch with ``torch.randperm`` seeded by ``seed + epoch``.
        seed: base seed.
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0) -> None:
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.epoch, self.start = 0, 0
        self.rank, self.world = rank(), world_size()

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select epoch ``epoch`` and skip its first ``start`` indices (of this process's share)."""
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start :])

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world)) - self.start


def build_loader(dataset: Dataset, batch_size: int, train: bool, num_workers: int = 0, seed: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """A :class:`DataLoader` of :class:`~minidet.data.collate.ImageBatch` with a :class:`ResumableSampler`.

    Training drops the last incomplete batch so every iteration has the same batch size.
    """
    sampler = ResumableSampler(len(dataset), shuffle=train, seed=seed)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_detection,
        pin_memory=pin_memory, drop_last=train, persistent_workers=False,
    )
