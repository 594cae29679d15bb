"""Tests of build_transforms: boxes follow flips and resizes, degenerate boxes go with their labels."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torchvision import tv_tensors

from minidet.data import build_transforms
from minidet.errors import ConfigError


def _sample(h: int = 100, w: int = 200, boxes: list[list[float]] | None = None) -> tuple[tv_tensors.Image, dict[str, Any]]:
    boxes = boxes if boxes is not None else [[10.0, 20.0, 30.0, 60.0], [150.0, 0.0, 200.0, 100.0]]
    image = tv_tensors.Image(torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)))
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes), format="XYXY", canvas_size=(h, w)),
        "labels": torch.arange(len(boxes), dtype=torch.int64) + 1,
        "image_id": 42,
        "orig_size": torch.tensor([h, w]),
    }
    return image, target


def test_flip_maps_boxes_by_hand() -> None:
    image, target = _sample()
    flip = build_transforms(True, size=100, max_size=200, hflip=1.0, scale_jitter=None)
    out_image, out = flip(image, target)
    # x -> W - x with W = 200, corners swap: [10, 20, 30, 60] -> [170, 20, 190, 60].
    assert torch.equal(out["boxes"], torch.tensor([[170.0, 20.0, 190.0, 60.0], [0.0, 0.0, 50.0, 100.0]]))
    assert torch.equal(out_image, image.flip(-1))
    assert torch.equal(out["labels"], target["labels"])


def test_passthrough_fields_untouched() -> None:
    image, target = _sample()
    _, out = build_transforms(True, size=64)(image, target)
    assert out["image_id"] == 42 and torch.equal(out["orig_size"], torch.tensor([100, 200]))


def test_eval_resize_scales_boxes() -> None:
    image, target = _sample()
    out_image, out = build_transforms(False, size=50, max_size=100)(image, target)
    assert out_image.shape == (3, 50, 100)
    assert torch.allclose(out["boxes"], target["boxes"] * 0.5)
    assert out["boxes"].canvas_size == (50, 100)


def test_longer_side_cap() -> None:
    # Shorter side 100 -> 50 would make the longer side 100 > 80, so the cap wins: ratio 80 / 200.
    image, target = _sample()
    out_image, out = build_transforms(False, size=50, max_size=80)(image, target)
    assert out_image.shape == (3, 40, 80)
    assert torch.allclose(out["boxes"], target["boxes"] * 0.4)


def test_scale_jitter_keeps_square_images_square() -> None:
    image, target = _sample(64, 64, [[8.0, 8.0, 40.0, 24.0]])
    seen = set()
    tf = build_transforms(True, size=64, hflip=0.0, scale_jitter=(0.5, 2.0))
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out = tf(image, target)
        h, w = out_image.shape[1:]
        assert h == w and 32 <= h <= 128
        assert torch.allclose(out["boxes"], target["boxes"] * (h / 64), atol=1e-5)
        seen.add(h)
    assert len(seen) > 5


def test_sanitize_drops_degenerate_boxes_with_labels() -> None:
    boxes = [[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 50.5, 70.0], [0.0, 0.0, 100.0, 0.2], [60.0, 5.0, 90.0, 9.0]]
    image, target = _sample(100, 100, boxes)
    _, out = build_transforms(True, size=100, hflip=0.0, scale_jitter=None)(image, target)
    assert torch.equal(out["boxes"], torch.tensor([boxes[0], boxes[3]]))
    assert torch.equal(out["labels"], torch.tensor([1, 4]))


def test_same_seed_same_sample() -> None:
    image, target = _sample()
    tf = build_transforms(True, size=64)
    torch.manual_seed(7)
    a = tf(image, target)
    torch.manual_seed(7)
    b = tf(image, target)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"size": 64, "max_size": 32}, {"size": 64, "hflip": 1.5},
                                    {"size": 64, "scale_jitter": (1.2, 0.8)}])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        build_transforms(True, **kwargs)
