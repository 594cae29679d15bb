"""Property: whatever corruption a COCO file or its images suffer, loading and reading every sample ends
in valid samples or a clear minidet error (DatasetError), never an unrelated exception."""
import copy
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minidet.data import CocoDetection
from minidet.errors import MinidetError

JUNK = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=5), st.lists(st.integers(-5, 300), max_size=6), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
SECTIONS = ("images", "annotations", "categories")


@st.composite
def corruption(draw):
    """A list of edits: (kind, section, record index, field, value)."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "delete", "drop_section", "truncate", "break_image", "duplicate"]))
        edits.append((kind, draw(st.sampled_from(SECTIONS)), draw(st.integers(0, 50)),
                      draw(st.sampled_from(["id", "image_id", "category_id", "bbox", "width", "height", "file_name", "name", "iscrowd", "area"])),
                      draw(JUNK), draw(st.integers(1, 400))))
    return edits


def apply(data, edits, ann_path, image_dir):
    data = copy.deepcopy(data)
    raw = None
    for kind, section, idx, field, value, cut in edits:
        records = data.get(section) if isinstance(data, dict) else None
        rec = records[idx % len(records)] if isinstance(records, list) and records else None
        if kind == "set" and isinstance(rec, dict):
            rec[field] = value
        elif kind == "delete" and isinstance(rec, dict):
            rec.pop(field, None)
        elif kind == "drop_section" and isinstance(data, dict):
            data.pop(section, None)
        elif kind == "duplicate" and isinstance(records, list) and rec is not None:
            records.append(copy.deepcopy(rec))
        elif kind == "truncate":
            raw = json.dumps(data)[:cut]
        elif kind == "break_image":
            files = sorted(image_dir.iterdir())
            files[idx % len(files)].write_bytes(b"\x89PNG garbage"[: cut % 12])
    ann_path.write_text(raw if raw is not None else json.dumps(data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=corruption())
def test_corrupted_inputs_give_samples_or_a_minidet_error(tiny_shapes, tmp_path_factory, edits):
    work = tmp_path_factory.mktemp("fuzz")
    image_dir = work / "images"
    image_dir.mkdir()
    for p in sorted(tiny_shapes["val_images"].iterdir()):
        (image_dir / p.name).write_bytes(p.read_bytes())
    ann = work / "instances.json"
    apply(json.loads(tiny_shapes["val"].read_text()), edits, ann, image_dir)
    try:
        ds = CocoDetection(ann, image_dir)
        for i in range(len(ds)):
            image, target = ds[i]
            assert image.dtype == torch.float32 and image.shape[0] == 3
            assert target["boxes"].shape == (len(target["labels"]), 4)
            assert torch.isfinite(target["boxes"]).all()
    except MinidetError:
        pass  # a clear error is the other allowed outcome


def test_fuzz_strategy_reaches_both_outcomes(tiny_shapes, tmp_path):
    """Guard against a vacuous property: one edit that must fail, one that must load."""
    data = json.loads(tiny_shapes["val"].read_text())
    apply(data, [("set", "annotations", 0, "bbox", "x", 1)], tmp_path / "a.json", tiny_shapes["val_images"])
    with pytest.raises(MinidetError):
        CocoDetection(tmp_path / "a.json", tiny_shapes["val_images"])
    apply(data, [("set", "annotations", 0, "area", 5.0, 1)], tmp_path / "b.json", tiny_shapes["val_images"])
    assert len(CocoDetection(tmp_path / "b.json", tiny_shapes["val_images"])) == len(data["images"])
