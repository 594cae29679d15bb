"""minidet check-data: every problem listed with file, record, field and value; training refuses a bad
dataset unless told to skip bad records, and then says how many it skipped."""
import json
import shutil

import pytest
from PIL import Image

from minidet.cli import main
from minidet.data import CocoDetection
from minidet.data.check import check_dataset
from minidet.errors import DatasetError


@pytest.fixture
def corrupted(tiny_shapes, tmp_path):
    """A copy of the tiny training split with five different problems in five records."""
    images = tmp_path / "images"
    shutil.copytree(tiny_shapes["train_images"], images)
    data = json.loads(tiny_shapes["train"].read_text())
    anns = data["annotations"]
    anns[0]["bbox"] = [120.0, 120.0, 50.0, 50.0]             # outside the 128 px image
    anns[1]["category_id"] = 99                              # unknown category
    anns[2]["id"] = anns[3]["id"]                            # duplicate id
    (images / data["images"][1]["file_name"]).unlink()       # missing file
    Image.new("RGB", (64, 64)).save(images / data["images"][2]["file_name"])  # wrong size
    del anns[4]["bbox"]                                      # missing field
    ann = tmp_path / "bad.json"
    ann.write_text(json.dumps(data))
    return ann, images, data


def test_clean_dataset_has_no_problems(tiny_shapes, capsys):
    assert check_dataset(tiny_shapes["train"], tiny_shapes["train_images"]) == []
    assert main(["check-data", str(tiny_shapes["train"]), "--images", str(tiny_shapes["train_images"])]) == 0
    assert "0 problems found (clean)" in capsys.readouterr().out


def test_every_problem_is_reported(corrupted, capsys):
    ann, images, data = corrupted
    problems = check_dataset(ann, images)
    assert len(problems) == 6  # the duplicate id is reported once, on the second record
    text = "\n".join(problems)
    a = data["annotations"]
    assert f"annotations[0] (id={a[0]['id']}): field 'bbox' = [120.0, 120.0, 50.0, 50.0] lies outside" in text
    assert "field 'category_id' = 99 is not a category id" in text
    assert f"field 'id' = {a[3]['id']} is a duplicate of" in text
    assert "missing field 'bbox'" in text
    assert f"field 'file_name' = '{data['images'][1]['file_name']}'" in text and "not found" in text
    assert "(128, 128) but" in text and "is 64x64" in text
    assert all(str(ann) in p for p in problems)
    assert main(["check-data", str(ann), "--images", str(images)]) == 1
    assert "6 problems found" in capsys.readouterr().out


def test_training_refuses_bad_data_unless_told_to_skip(corrupted):
    ann, images, data = corrupted
    with pytest.raises(DatasetError, match=r"bad.json: annotations\[\d+\] .*\(and 3 more problems: run `minidet check-data"):
        CocoDetection(ann, images)
    with pytest.warns(UserWarning, match="skipped 4 bad records"):
        ds = CocoDetection(ann, images, skip_bad_records=True)
    assert ds.skipped_records == 4
    assert len(ds.coco.dataset["annotations"]) == len(data["annotations"]) - 4


def test_unusable_file_is_an_error_not_a_report(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="x.json.*not a readable JSON"):
        check_dataset(bad)
    assert main(["check-data", str(bad)]) == 2


def test_category_without_annotations_is_a_warning(tiny_shapes, tmp_path, capsys):
    """An exporter's id-0 supercategory: check-data warns (exit 0), training trains and says so."""
    root = tmp_path / "data"
    shutil.copytree(tiny_shapes["root"], root)
    for split in ("train", "val"):
        path = root / "annotations" / f"instances_{split}.json"
        data = json.loads(path.read_text())
        data["categories"].insert(0, {"id": 0, "name": "shapes", "supercategory": "none"})
        path.write_text(json.dumps(data))
    ann = root / "annotations" / "instances_train.json"
    assert main(["check-data", str(ann), "--images", str(root / "train")]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "category id=0 name='shapes' has no annotation" in out
    assert "0 problems found, 1 warning (clean)" in out
    assert main(["train", "--data", str(root), "--iters", "1", "--size", "64", "--batch", "2", "--workers", "0",
                 "--out", str(tmp_path / "run"), "--device", "cpu", "--no-eval"]) == 0
    assert "minidet: warning:" in capsys.readouterr().out
