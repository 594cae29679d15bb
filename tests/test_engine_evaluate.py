"""COCO evaluation: perfect detections score 1, none score 0, coordinates are mapped back."""
import pytest
import torch

from minidet.data import CocoDetection
from minidet.engine import coco_metrics, detections_to_coco


def gt_as_results(ds):
    res = []
    for ann in ds.coco.dataset["annotations"]:
        res.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"], "score": 1.0})
    return res


def test_ground_truth_scores_one_and_nothing_scores_zero(tiny_shapes):
    ds = CocoDetection(tiny_shapes["val"], tiny_shapes["val_images"])
    m = coco_metrics(ds.coco, gt_as_results(ds))
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    assert coco_metrics(ds.coco, [])["AP"] == 0.0


def test_detections_rescaled_to_original_size_and_category_ids():
    dets = [{"boxes": torch.tensor([[10.0, 20, 30, 60]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}]
    targets = [{"image_id": 7, "orig_size": torch.tensor([200, 100])}]
    rec = detections_to_coco(dets, targets, torch.tensor([[100, 50]]), {0: 3, 1: 9})
    assert rec == [{"image_id": 7, "category_id": 9, "bbox": [20.0, 40.0, 40.0, 80.0], "score": 0.5}]
