"""Crowded images: assign in chunks of ground truths so that memory stays bounded.

Every assigner compares all ``A`` anchors (or points) with all ``G`` ground truths of ``B`` images, in
``(B, A, G)`` tensors: 500 ground truths and 150k anchors make 75M pairs, 300 MB per float map and
several maps at once. The only reductions across ground truths are per anchor (best IoU, smallest
area, any claim), so the ground truths can be taken a chunk at a time and the per-anchor results merged
(:func:`merge_best`), with the same result as all at once: ties go to the lower ground-truth index in
both, as ``max``/``argmin`` over the whole axis do. Everything per ground truth (its best anchor, its
candidates and their statistics) stays inside one chunk.

A chunk holds at most :data:`MAX_PAIRS` (image, anchor, ground-truth) triples unless a chunk size is
given, so an ordinary batch is one chunk and runs exactly as before.
"""
from __future__ import annotations

import torch
from torch import Tensor

MAX_PAIRS = 2**24  # 16M pairs: a float32 (B, A, g) map of 64 MB per chunk


def gt_chunks(num_gt: int, pairs_per_gt: int, chunk_size: int | None = None) -> list[slice]:
    """Slices of the ground-truth axis: ``chunk_size`` ground truths each, or (``None``) as many as keep a
    chunk within :data:`MAX_PAIRS` pairs, ``pairs_per_gt`` being ``B x A``. At least one slice."""
    size = chunk_size or max(1, MAX_PAIRS // max(1, pairs_per_gt))
    return [slice(s, min(s + size, num_gt)) for s in range(0, max(num_gt, 1), size)]


def merge_best(best: tuple[Tensor, Tensor] | None, values: Tensor, indices: Tensor, offset: int,
               largest: bool = True) -> tuple[Tensor, Tensor]:
    """Fold one chunk's per-anchor best ``(values, indices)`` (indices within the chunk, which starts at
    ground truth ``offset``) into the running ``best``; a tie keeps the earlier chunk's, i.e. the lower
    ground-truth index. ``largest=False`` keeps the smallest value. Returns ``(values, indices)``."""
    indices = indices + offset
    if best is None:
        return values, indices
    better = values > best[0] if largest else values < best[0]
    return torch.where(better, values, best[0]), torch.where(better, indices, best[1])


TILE_PAIRS = 1 << 18
"""(image, anchor, ground-truth) pairs per tile in :func:`anchor_tiles`: 256k float32 values, 1 MB per map,
about the size of a core's L2 cache (the fastest of 64k-1M pairs measured on the 2-core AMD EPYC)."""


def anchor_tiles(num_anchors: int, pairs_per_anchor: int, tile_pairs: int | None = None) -> list[slice]:
    """Slices of the anchor axis of about ``tile_pairs`` pairs each (default :data:`TILE_PAIRS`),
    ``pairs_per_anchor`` being ``B x g``. On a CPU a reduction over ground truths computed one cached tile
    at a time beats the same lines over a ``(B, A, g)`` map that lives in main memory; the result is the
    same (element-wise lines and per-anchor reductions do not depend on the tiling). At least one slice."""
    size = max(1, (tile_pairs or TILE_PAIRS) // max(1, pairs_per_anchor))
    return [slice(s, min(s + size, num_anchors)) for s in range(0, max(num_anchors, 1), size)]
