"""Tests of collate_detection and ImageBatch: padding, sizes, device moves, pinned memory."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from minidet.data import ImageBatch, collate_detection


def _sample(h: int, w: int, n: int, image_id: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
    boxes = torch.tensor([[1.0, 2.0, 5.0, 7.0]]).repeat(n, 1)
    return tv_tensors.Image(torch.rand(3, h, w) + 0.1), {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "labels": torch.arange(n),
        "image_id": image_id,
        "orig_size": torch.tensor([h, w]),
    }


@pytest.fixture
def batch() -> tuple[list[Any], ImageBatch]:
    samples = [_sample(50, 70, 2, 1), _sample(64, 33, 0, 2), _sample(20, 96, 1, 3)]
    return samples, collate_detection(samples)


def test_padding_and_sizes(batch: tuple[list[Any], ImageBatch]) -> None:
    samples, b = batch
    assert b.images.shape == (3, 3, 64, 96) and len(b) == 3
    assert b.images.shape[-1] % 32 == 0 and b.images.shape[-2] % 32 == 0
    assert torch.equal(b.image_sizes, torch.tensor([[50, 70], [64, 33], [20, 96]]))
    assert b.image_sizes.dtype == torch.int64
    for i, (img, _) in enumerate(samples):
        h, w = img.shape[1:]
        assert torch.equal(b.images[i, :, :h, :w], img)
        assert b.images[i, :, h:].abs().sum() == 0 and b.images[i, :, :, w:].abs().sum() == 0


def test_other_divisor() -> None:
    b = collate_detection([_sample(50, 70, 1, 1)], size_divisible=128)
    assert b.images.shape == (1, 3, 128, 128)


def test_targets_are_plain_tensors(batch: tuple[list[Any], ImageBatch]) -> None:
    _, b = batch
    assert type(b.images) is torch.Tensor
    for t, n, image_id in zip(b.targets, (2, 0, 1), (1, 2, 3)):
        assert type(t["boxes"]) is torch.Tensor and t["boxes"].shape == (n, 4) and t["boxes"].dtype == torch.float32
        assert t["labels"].shape == (n,) and t["labels"].dtype == torch.int64
        assert t["image_id"] == image_id and t["orig_size"].dtype == torch.int64


def test_to_cpu(batch: tuple[list[Any], ImageBatch]) -> None:
    _, b = batch
    moved = b.to("cpu", non_blocking=True)
    assert isinstance(moved, ImageBatch) and torch.equal(moved.images, b.images)
    assert torch.equal(moved.targets[0]["boxes"], b.targets[0]["boxes"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_pin_memory_with_dataloader_and_to_cuda() -> None:
    samples = [_sample(50, 70, 2, 1), _sample(64, 33, 0, 2)]
    loader = DataLoader(samples, batch_size=2, collate_fn=collate_detection, pin_memory=True)
    b = next(iter(loader))
    assert isinstance(b, ImageBatch) and b.images.is_pinned() and b.targets[0]["boxes"].is_pinned()
    cuda = b.to("cuda", non_blocking=True)
    assert cuda.images.is_cuda and cuda.image_sizes.is_cuda and cuda.targets[0]["labels"].is_cuda
    assert torch.equal(cuda.images.cpu(), b.images)
