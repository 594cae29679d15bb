"""Tests of CocoDetection: a hand-written COCO round trip, boundary validation, deterministic augmentation."""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from minidet.data import CocoDetection, build_transforms
from minidet.errors import DatasetError

# Non-contiguous category ids on purpose: labels must become 0..C-1 in sorted-id order.
TINY: dict[str, Any] = {
    "images": [
        {"id": 5, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png", "width": 20, "height": 20},
        {"id": 9, "file_name": "gray.png", "width": 16, "height": 12},
    ],
    "annotations": [
        {"id": 1, "image_id": 5, "category_id": 10, "bbox": [1.5, 2.25, 10.0, 5.5], "area": 55.0, "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 3, "bbox": [20, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 3, "image_id": 5, "category_id": 7, "bbox": [0, 0, 40, 30], "area": 1200, "iscrowd": 1},
        {"id": 4, "image_id": 2, "category_id": 7, "bbox": [-0.5, 0, 20.8, 4], "area": 80, "iscrowd": 0},
    ],
    "categories": [{"id": 10, "name": "ten"}, {"id": 3, "name": "three"}, {"id": 7, "name": "seven"}],
}


def _write(root: Path, data: dict[str, Any], images: bool = True) -> Path:
    ann = root / "ann.json"
    ann.write_text(json.dumps(data))
    if images:
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "a.png")
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / "b.png")
        Image.fromarray(rng.integers(0, 255, (12, 16), dtype=np.uint8), mode="L").save(root / "gray.png")
    return ann


@pytest.fixture
def tiny(tmp_path: Path) -> CocoDetection:
    return CocoDetection(_write(tmp_path, TINY), tmp_path)


def test_round_trip(tiny: CocoDetection, tmp_path: Path) -> None:
    assert tiny.ids == [2, 5, 9] and tiny.cat_ids == [3, 7, 10]
    assert tiny.class_names == ("three", "seven", "ten") and tiny.num_classes == 3
    assert tiny.cat_id_to_label == {3: 0, 7: 1, 10: 2} and tiny.label_to_cat_id == {0: 3, 1: 7, 2: 10}
    image, target = tiny[1]  # image id 5
    expected = np.asarray(Image.open(tmp_path / "a.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    assert image.dtype == torch.float32 and torch.equal(image, torch.from_numpy(expected))
    # xywh -> xyxy by hand; the crowd box (id 3) is skipped.
    assert torch.equal(target["boxes"], torch.tensor([[1.5, 2.25, 11.5, 7.75], [20, 10, 40, 30]]))
    assert target["boxes"].canvas_size == (30, 40) and target["boxes"].dtype == torch.float32
    assert torch.equal(target["labels"], torch.tensor([2, 0])) and target["labels"].dtype == torch.int64
    assert target["image_id"] == 5 and torch.equal(target["orig_size"], torch.tensor([30, 40]))


def test_small_overshoot_is_clipped(tiny: CocoDetection) -> None:
    _, target = tiny[0]  # image id 2: bbox [-0.5, 0, 20.8, 4] in a 20x20 image
    assert torch.allclose(target["boxes"], torch.tensor([[0.0, 0.0, 20.0, 4.0]]))


def test_image_without_annotations_and_grayscale(tiny: CocoDetection) -> None:
    image, target = tiny[2]
    assert image.shape == (3, 12, 16) and torch.equal(image[0], image[1])
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_crowd_kept_when_asked(tmp_path: Path) -> None:
    ds = CocoDetection(_write(tmp_path, TINY), tmp_path, skip_crowd=False)
    assert ds[1][1]["boxes"].shape == (3, 4)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A corruption that sets ``data[k0][k1]...`` (path 'annotations.0.bbox') to ``value``."""
    def corrupt(data: dict[str, Any]) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = data
        for k in parents:
            node = node[k]
        node[last] = value
    return corrupt


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def corrupt(data: dict[str, Any]) -> None:
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        node = data
        for k in parents:
            node = node[k]
        del node[last]
    return corrupt


# (corruption, substrings the DatasetError message must contain)
BAD_CASES = {
    "no images key": (_delete("images"), ["'images'"]),
    "no annotations key": (_delete("annotations"), ["'annotations'"]),
    "no categories key": (_delete("categories"), ["'categories'"]),
    "images not a list": (_set("images", {}), ["images", "dict"]),
    "image without id": (_delete("images.1.id"), ["images[1]", "'id'"]),
    "image without file_name": (_delete("images.0.file_name"), ["images[0] (id=5)", "'file_name'"]),
    "image without width": (_delete("images.0.width"), ["images[0] (id=5)", "'width'"]),
    "image without height": (_delete("images.0.height"), ["images[0] (id=5)", "'height'"]),
    "annotation without image_id": (_delete("annotations.1.image_id"), ["annotations[1] (id=2)", "'image_id'"]),
    "annotation without bbox": (_delete("annotations.1.bbox"), ["annotations[1] (id=2)", "'bbox'"]),
    "annotation without category_id": (_delete("annotations.0.category_id"), ["annotations[0] (id=1)", "'category_id'"]),
    "string width": (_set("images.0.width", "40"), ["images[0] (id=5)", "'width'", "'40'"]),
    "zero height": (_set("images.1.height", 0), ["images[1] (id=2)", "'height'", "= 0"]),
    "float image id": (_set("images.0.id", 5.0), ["images[0] (id=5.0)", "'id'", "5.0"]),
    "record not a dict": (_set("annotations.2", [1, 2]), ["annotations[2]", "[1, 2]"]),
    "bbox of 3 numbers": (_set("annotations.0.bbox", [1, 2, 3]), ["annotations[0] (id=1)", "'bbox'", "[1, 2, 3]"]),
    "bbox with a string": (_set("annotations.0.bbox", [1, 2, "3", 4]), ["'bbox'", "[1, 2, '3', 4]"]),
    "bbox with NaN": (_set("annotations.0.bbox", [1, 2, float("nan"), 4]), ["'bbox'", "nan"]),
    "zero width box": (_set("annotations.0.bbox", [1, 2, 0, 4]), ["annotations[0] (id=1)", "'bbox'", "[1, 2, 0, 4]"]),
    "negative height box": (_set("annotations.0.bbox", [1, 2, 3, -4]), ["'bbox'", "[1, 2, 3, -4]"]),
    "box beyond the image": (_set("annotations.1.bbox", [20, 10, 22, 20]), ["annotations[1] (id=2)", "'bbox'", "[20, 10, 22, 20]", "40x30"]),
    "box left of the image": (_set("annotations.1.bbox", [-1.5, 10, 5, 5]), ["'bbox'", "[-1.5, 10, 5, 5]"]),
    "unknown category": (_set("annotations.0.category_id", 4), ["annotations[0] (id=1)", "'category_id'", "= 4"]),
    "unknown image": (_set("annotations.0.image_id", 77), ["annotations[0] (id=1)", "'image_id'", "= 77"]),
    "duplicate image id": (_set("images.1.id", 5), ["images[1] (id=5)", "'id'", "duplicate", "images[0]"]),
    "duplicate annotation id": (_set("annotations.3.id", 1), ["annotations[3] (id=1)", "'id'", "duplicate"]),
    "duplicate category id": (_set("categories.1.id", 10), ["categories[1] (id=10)", "duplicate"]),
    "bad iscrowd": (_set("annotations.0.iscrowd", 2), ["'iscrowd'", "= 2"]),
    "no categories": (_set("categories", []), ["'categories'"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_record_raises_dataset_error(tmp_path: Path, case: str) -> None:
    corrupt, needles = BAD_CASES[case]
    data = copy.deepcopy(TINY)
    corrupt(data)
    ann = _write(tmp_path, data, images=False)
    with pytest.raises(DatasetError) as info:
        CocoDetection(ann, tmp_path)
    message = str(info.value)
    for needle in [str(ann), *needles]:
        assert needle in message, (needle, message)


@pytest.mark.parametrize("text", ["", "{\"images\": [", "not json", "[1, 2]"])
def test_non_json_or_truncated_file(tmp_path: Path, text: str) -> None:
    ann = tmp_path / "broken.json"
    ann.write_text(text)
    with pytest.raises(DatasetError, match="broken.json"):
        CocoDetection(ann, tmp_path)


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere.json"):
        CocoDetection(tmp_path / "nowhere.json", tmp_path)


def test_missing_image_file_is_reported(tmp_path: Path) -> None:
    ds = CocoDetection(_write(tmp_path, TINY), tmp_path)
    (tmp_path / "b.png").unlink()
    with pytest.raises(DatasetError, match="b.png"):
        ds.check_files()
    with pytest.raises(DatasetError, match=r"b\.png.*not found"):
        ds[0]
    assert ds[1][0].shape == (3, 30, 40)  # the other images still load


def test_image_size_mismatch(tmp_path: Path) -> None:
    data = copy.deepcopy(TINY)
    data["images"][1]["width"] = 21
    ds = CocoDetection(_write(tmp_path, data), tmp_path)
    with pytest.raises(DatasetError, match="20x20.*width=21"):
        ds[0]


def _augmented(tmp_path: Path, seed: int = 0) -> CocoDetection:
    return CocoDetection(_write(tmp_path, TINY), tmp_path, seed=seed,
                         transforms=build_transforms(True, 24, scale_jitter=(0.5, 2.0)))


def test_augmentation_depends_only_on_seed_epoch_index(tmp_path: Path) -> None:
    ds = _augmented(tmp_path)
    torch.manual_seed(123)
    a = [ds[i] for i in range(3)]
    torch.manual_seed(456)
    b = [ds[i] for i in reversed(range(3))][::-1]
    for (ia, ta), (ib, tb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"])
    ds.set_epoch(1)
    assert any(ds[i][0].shape != a[i][0].shape or not torch.equal(ds[i][0], a[i][0]) for i in range(3))


def test_augmentation_is_worker_independent(tmp_path: Path) -> None:
    ds = _augmented(tmp_path, seed=5)
    ds.set_epoch(3)
    single = list(DataLoader(ds, batch_size=None, num_workers=0))
    multi = list(DataLoader(ds, batch_size=None, num_workers=2))
    for (ia, ta), (ib, tb) in zip(single, multi):
        assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"])
        assert torch.equal(ta["labels"], tb["labels"])
