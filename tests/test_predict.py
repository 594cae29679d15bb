"""``minidet predict``: files, folders and globs in; drawn images and COCO-style records out."""
from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from minidet.cli import main


def test_predict_folder_glob_and_a_broken_file(tiny_checkpoint, tiny_shapes, tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 60, 3), dtype=np.uint8)).save(photos / "portrait.jpg")
    Image.fromarray(np.zeros((40, 90), np.uint8)).save(photos / "sub" / "gray.bmp")
    (photos / "broken.png").write_bytes(b"\x89PNG not really")
    val = sorted(tiny_shapes["val_images"].glob("*.png"))[:2]
    code = main(["predict", str(tiny_checkpoint), str(photos), str(tiny_shapes["val_images"] / "00000[01].png"),
                 "--out", str(tmp_path / "out"), "--score-thresh", "0.0"])
    captured = capsys.readouterr()
    assert code == 1  # one input could not be read ...
    assert "broken.png" in captured.out + captured.err and "not a readable image" in captured.out + captured.err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())  # ... and the others went on
    assert written == sorted(["000000.png", "000001.png", "gray.png", "portrait.jpg", "predictions.json"])
    assert Image.open(tmp_path / "out" / "portrait.jpg").size == (60, 150)  # drawn at the original size
    records = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert records and set(records[0]) == {"file_name", "bbox", "score", "category_id", "category_name"}
    assert {r["file_name"] for r in records} >= {str(p) for p in val}
    for r in records:
        if r["file_name"].endswith("portrait.jpg"):
            x, y, w, h = r["bbox"]
            assert 0 <= x and x + w <= 60 + 0.01 and 0 <= y and y + h <= 150 + 0.01


def test_predict_with_coco_ids(tiny_checkpoint, tiny_shapes, tmp_path):
    data = json.loads(tiny_shapes["val"].read_text())
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for img in data["images"][:3]:
        shutil.copy(tiny_shapes["val_images"] / img["file_name"], imgs / img["file_name"])
    code = main(["predict", str(tiny_checkpoint), str(imgs / "*.png"), "--out", str(tmp_path / "out"),
                 "--score-thresh", "0.0", "--coco", str(tiny_shapes["val"])])
    assert code == 0
    records = json.loads((tmp_path / "out" / "predictions.json").read_text())
    by_name = {img["file_name"]: img["id"] for img in data["images"]}
    cats = {c["id"]: c["name"] for c in data["categories"]}
    assert records
    for r in records:
        assert r["image_id"] == by_name[r["file_name"].split("/")[-1]]
        assert cats[r["category_id"]] == r["category_name"]


def test_predict_nothing_found_is_an_error(tiny_checkpoint, tmp_path, capsys):
    assert main(["predict", str(tiny_checkpoint), str(tmp_path / "nothing*.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "matches no file" in capsys.readouterr().err
