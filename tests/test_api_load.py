"""``minidet.load`` / :class:`Predictor`: every input kind, and boxes back in the original image's pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import minidet
from minidet.boxes.ops import rescale_boxes
from minidet.data import CocoDetection, build_transforms
from minidet.engine.evaluate import detections_to_coco
from minidet.engine.loader import build_loader
from minidet.engine.predictor import Predictor, to_image_tensor
from minidet.errors import ConfigError, DatasetError


class BrightBoxDetector(nn.Module):
    """Detects the box of the pixels brighter than 0.5 in each (un-padded) input: a model whose right answer
    is known, so the predictor's resizing and un-resizing can be checked end to end."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images, image_sizes):
        out = []
        for img, (h, w) in zip(images, image_sizes.tolist()):
            ys, xs = (img[:, :h, :w].mean(0) > 0.5).nonzero(as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            out.append({"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])})
        return out


def _picture(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    arr = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    return arr


@pytest.mark.parametrize("hw,box", [((90, 200), (40, 20, 120, 70)), ((300, 110), (10, 150, 90, 280))])
def test_boxes_land_in_the_original_frame_for_every_input_kind(hw, box, tmp_path):
    """Landscape and portrait images, resized to fit 128 px: the detected box maps back to the drawn one
    within one input pixel (200 / 128 = 1.6 original px), whatever the input kind."""
    arr = _picture(*hw, box)
    path = tmp_path / "pic.png"
    Image.fromarray(arr).save(path)
    inputs = [str(path), path, Image.fromarray(arr), arr, torch.from_numpy(arr).permute(2, 0, 1),
              torch.from_numpy(arr).permute(2, 0, 1).float() / 255]
    pred = Predictor(BrightBoxDetector(), ["bg", "rect"], size=128)
    tol = max(hw) / 128
    for out in pred.predict(inputs) + [pred.predict(inputs[0])]:
        assert out["boxes"].device.type == "cpu" and out["boxes"].shape == (1, 4)
        assert torch.allclose(out["boxes"][0], torch.tensor(box, dtype=torch.float32), atol=tol)
        assert out["names"] == ["rect"] and out["labels"].tolist() == [1]


def test_rescale_boxes_by_hand():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 40.0]])
    assert rescale_boxes(boxes, (50, 100), (100, 400)).tolist() == [[40.0, 40.0, 120.0, 80.0]]


def test_input_kinds_and_errors(tmp_path):
    gray = Image.fromarray(np.full((7, 5), 128, np.uint8))  # mode L -> RGB
    assert to_image_tensor(gray).shape == (3, 7, 5)
    rgba = np.zeros((4, 6, 4), np.uint8)
    assert to_image_tensor(rgba).shape == (3, 4, 6)
    assert to_image_tensor(torch.zeros(1, 4, 6)).shape == (3, 4, 6)
    with pytest.raises(ConfigError, match="must be"):
        to_image_tensor(torch.zeros(4, 6))
    with pytest.raises(ConfigError, match="cannot read an image"):
        to_image_tensor(3.0)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg"):
        to_image_tensor(bad)


def test_load_matches_the_evaluation_path(tiny_checkpoint, tiny_shapes):
    """minidet.load on a checkpoint: on a validation file it gives the detections `minidet eval` scores
    (dataset + padded batch + detections_to_coco), in the file's pixels."""
    det = minidet.load(tiny_checkpoint)
    assert det.size == 96 and len(det.class_names) == 6 and "input side 96" in repr(det)
    ds = CocoDetection(tiny_shapes["val"], tiny_shapes["val_images"], build_transforms(False, 96))
    batch = next(iter(build_loader(ds, 2, train=False, num_workers=0)))
    with torch.no_grad():
        ref = detections_to_coco(det.model(batch.images, image_sizes=batch.image_sizes), batch.targets,
                                 batch.image_sizes, ds.label_to_cat_id)
    for i in range(2):
        image_id = batch.targets[i]["image_id"]
        out = det.predict(ds.image_path(image_id))
        mine = [(r["category_id"], r["score"]) for r in ref if r["image_id"] == image_id]
        assert len(mine) == len(out["scores"])
        xywh = out["boxes"].clone()
        xywh[:, 2:] -= xywh[:, :2]
        ref_boxes = torch.tensor([r["bbox"] for r in ref if r["image_id"] == image_id]).reshape(-1, 4)
        assert torch.allclose(xywh, ref_boxes, atol=0.02)
        assert [det.category_ids[lab] for lab in out["labels"].tolist()] == [c for c, _ in mine]


def test_load_on_a_portrait_image_keeps_boxes_inside_it(tiny_checkpoint):
    det = minidet.load(tiny_checkpoint)
    det.model.score_thresh = 0.0  # a 3-iteration model scores below the default 0.05
    arr = np.random.default_rng(0).integers(0, 255, (170, 60, 3), dtype=np.uint8)
    out = det.predict(arr, score_thresh=0.0)
    b = out["boxes"]
    assert len(b) > 0 and (b[:, 0] >= 0).all() and (b[:, 2] <= 60 + 1e-4).all() and (b[:, 3] <= 170 + 1e-4).all()
    assert b[:, 3].max() > 96  # beyond the 96 px input: the boxes were scaled back up
    assert len(out["names"]) == len(b) and all(n in det.class_names for n in out["names"])
