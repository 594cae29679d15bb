"""Data loading that can resume mid-epoch exactly.

:class:`ResumableSampler` draws the order of epoch ``e`` from ``seed + e`` alone, and can start at any
position, so a run restarted at iteration ``i`` sees exactly the batches it would have seen. Under
``torch.distributed`` each process takes every ``world_size``-th index of the same permutation, padded
(as :class:`~torch.utils.data.DistributedSampler` does) so that every process gets as many batches.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from minidet.data.collate import collate_detection
from minidet.engine.distributed import rank as current_rank
from minidet.engine.distributed import world_size


class ResumableSampler(Sampler[int]):
    """Shuffled (or sequential) indices, reproducible per epoch, startable at any offset, sharded by rank.

    Epoch ``e``'s order is ``torch.randperm(length)`` seeded by ``seed + e``; with ``world`` processes it
    is extended by its own first indices to a multiple of ``world`` and process ``r`` takes positions
    ``r, r + world, ...``: the shares are disjoint apart from that padding, cover the dataset and are
    equally long. One process (``world = 1``) gets the permutation itself.

    Args:
        length: dataset size.
        shuffle: permute each epoch with ``torch.randperm`` seeded by ``seed + epoch``.
        seed: base seed.
        rank, world: this process and the number of processes (default: from ``torch.distributed``).
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0, rank: int | None = None,
                 world: int | None = None) -> None:
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.epoch, self.start = 0, 0
        self.rank = current_rank() if rank is None else rank
        self.world = world_size() if world is None else world
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world})")

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select epoch ``epoch`` and skip its first ``start`` indices (of this process's share)."""
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.world > 1 and self.length:
            total = -(-self.length // self.world) * self.world
            order = (order * (total // self.length + 1))[:total]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start :])

    def __len__(self) -> int:
        share = -(-self.length // self.world) if self.world > 1 else self.length
        return max(0, share - self.start)


def build_loader(dataset: Dataset, batch_size: int, train: bool, num_workers: int = 0, seed: int = 0,
                 pin_memory: bool = False, shard: bool | None = None) -> DataLoader:
    """A :class:`DataLoader` of :class:`~minidet.data.collate.ImageBatch` with a :class:`ResumableSampler`.

    Training drops the last incomplete batch so every iteration has the same batch size. ``batch_size`` is
    per process. ``shard`` (default: ``train``) splits the data between ``torch.distributed`` processes;
    evaluation runs on rank 0 alone and reads everything.
    """
    shard = train if shard is None else shard
    sampler = ResumableSampler(len(dataset), shuffle=train, seed=seed, **({} if shard else {"rank": 0, "world": 1}))
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate_detection,
        pin_memory=pin_memory, drop_last=train, persistent_workers=False,
    )
