"""export_like_a_tool (lesson 08's dataset) and evaluate_snapshots, against hand computations."""
from __future__ import annotations

import json

from minidet.data import CocoDetection, build_transforms
from minidet.data.check import check_dataset
from minidet.data.export import EXPORT_SIZES, export_like_a_tool
from minidet.engine.evaluate import evaluate, evaluate_snapshots
from minidet.engine.experiment import load_detector
from minidet.engine.loader import build_loader

IDS = {"circle": 2, "square": 5, "triangle": 9, "star": 10, "hexagon": 40, "cross": 41}


def test_export_scales_boxes_and_renumbers_categories(tiny_shapes, tmp_path):
    out = export_like_a_tool(tiny_shapes["root"], tmp_path / "exp", IDS, seed=1)
    src = json.loads(tiny_shapes["train"].read_text())
    dst = json.loads(out["train"].read_text())
    assert [c["id"] for c in dst["categories"]] == [0, 2, 5, 9, 10, 40, 41]
    img = dst["images"][0]
    assert (img["width"], img["height"]) in EXPORT_SIZES and img["file_name"].endswith(".jpg")
    a_src = next(a for a in src["annotations"] if a["image_id"] == src["images"][0]["id"])
    a_dst = next(a for a in dst["annotations"] if a["image_id"] == img["id"])
    sx, sy = img["width"] / 128, img["height"] / 128
    x, y, w, h = a_src["bbox"]
    assert a_dst["bbox"] == [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)]
    assert a_dst["category_id"] == IDS[src["categories"][a_src["category_id"] - 1]["name"]]
    warnings: list[str] = []
    assert check_dataset(out["train"], out["train_images"], warnings) == []
    assert len(warnings) == 1 and "id=0" in warnings[0]


def test_evaluate_snapshots(tiny_checkpoint, tiny_shapes):
    ds = CocoDetection(tiny_shapes["val"], tiny_shapes["val_images"], build_transforms(False, 96))
    loader = build_loader(ds, 4, train=False, num_workers=0)
    rows = evaluate_snapshots(tiny_checkpoint.parent, loader)
    model, _ = load_detector(tiny_checkpoint)
    assert rows == [(3, evaluate(model, loader))]
    assert evaluate_snapshots(tiny_checkpoint.parent, loader, last_metrics={"AP": 0.5}) == [(3, {"AP": 0.5})]
