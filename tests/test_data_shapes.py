"""Tests of the synthetic shapes dataset: determinism, content statistics, COCO output, caching."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

import minidet.data.shapes as shapes_module
from minidet.data import SHAPE_CLASSES, CocoDetection, ShapesConfig, generate_shapes
from minidet.data.shapes_draw import rasterize
from minidet.data.shapes_geometry import class_ops, clip_polygon, visible_box
from minidet.errors import ConfigError, DatasetError

SMALL = ShapesConfig(num_train=12, num_val=4, seed=3)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stats_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 training images at 256 px with the default content settings."""
    root = tmp_path_factory.mktemp("shapes200")
    generate_shapes(root, ShapesConfig(num_train=200, num_val=0, seed=1), workers=2)
    return root


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    generate_shapes(tmp_path / "a", SMALL, workers=1)
    generate_shapes(tmp_path / "b", SMALL, workers=2)
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert len(a) == 12 + 4 + 3 and a == b


def test_other_seed_other_bytes(tmp_path: Path) -> None:
    generate_shapes(tmp_path / "a", SMALL, workers=1)
    generate_shapes(tmp_path / "b", ShapesConfig(num_train=12, num_val=4, seed=4), workers=1)
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert all(a[k] != b[k] for k in a if k.endswith(".png"))


def test_counts_and_boxes_inside_image(stats_root: Path) -> None:
    data = json.loads((stats_root / "annotations/instances_train.json").read_text())
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=201)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 12
    box = np.array([a["bbox"] for a in data["annotations"]])  # (N, 4) xywh
    assert (box[:, 2:] > 0).all()
    assert (box[:, :2] >= 0).all() and (box[:, :2] + box[:, 2:] <= 256 + 1e-3).all()
    assert np.allclose([a["area"] for a in data["annotations"]], box[:, 2] * box[:, 3], rtol=0, atol=1e-3)
    assert {a["iscrowd"] for a in data["annotations"]} == {0}
    labels = np.bincount([a["category_id"] for a in data["annotations"]], minlength=7)
    assert labels[0] == 0 and (labels[1:] > 0.1 * len(box)).all()  # classes roughly uniform


def test_sizes_cover_every_fpn_level(stats_root: Path) -> None:
    box = np.array([a["bbox"] for a in
                    json.loads((stats_root / "annotations/instances_train.json").read_text())["annotations"]])
    longer = box[:, 2:].max(1)
    assert longer.min() <= 10 and longer.max() >= 0.5 * 0.6 * 256
    log_side = np.log2(np.sqrt(box[:, 2] * box[:, 3]))
    assert log_side.max() - log_side.min() >= 3
    hist = np.histogram(log_side, bins=[3, 4, 5, 6, 7])[0]  # octaves 8-16, 16-32, 32-64, 64-128 px
    assert (hist > 0).all(), hist


def test_json_loads_with_pycocotools(tmp_path: Path) -> None:
    paths = generate_shapes(tmp_path, SMALL, workers=1)
    coco = COCO(str(paths["val"]))
    assert [coco.cats[i]["name"] for i in range(1, 7)] == list(SHAPE_CLASSES)
    assert len(coco.imgs) == 4 and all((paths["val_images"] / im["file_name"]).is_file()
                                       for im in coco.imgs.values())
    assert CocoDetection(paths["train"], paths["train_images"]).num_classes == 6


def test_skip_when_config_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_shapes(tmp_path, SMALL, workers=1)
    before = _hashes(tmp_path)

    def fail(*args: object) -> None:
        raise AssertionError("regenerated although the config did not change")

    monkeypatch.setattr(shapes_module, "_render_one", fail)
    paths = generate_shapes(tmp_path, SMALL, workers=1)
    assert paths["train"] == tmp_path / "annotations/instances_train.json" and _hashes(tmp_path) == before


def test_changed_config_needs_overwrite(tmp_path: Path) -> None:
    generate_shapes(tmp_path, SMALL, workers=1)
    other = ShapesConfig(num_train=5, num_val=2, seed=3)
    with pytest.raises(DatasetError, match="num_train"):
        generate_shapes(tmp_path, other, workers=1)
    generate_shapes(tmp_path, other, overwrite=True, workers=1)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [f"{i:06d}.png" for i in range(5)]


def test_min_objects_zero_gives_empty_images(tmp_path: Path) -> None:
    cfg = ShapesConfig(num_train=3, num_val=0, min_objects=0, max_objects=0, image_size=64)
    paths = generate_shapes(tmp_path, cfg, workers=1)
    ds = CocoDetection(paths["train"], paths["train_images"])
    assert len(ds) == 3 and ds[0][1]["boxes"].shape == (0, 4)


def test_config_round_trip_and_validation() -> None:
    cfg = ShapesConfig(seed=7, num_distractors=(1, 2))
    assert ShapesConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="min_objects"):
        ShapesConfig(min_objects=5, max_objects=2)
    with pytest.raises(ConfigError, match="image_size = '256'"):
        ShapesConfig.from_dict({"image_size": "256"})
    with pytest.raises(ConfigError, match="bogus"):
        ShapesConfig.from_dict({"bogus": 1})


def test_clip_polygon_hand_case() -> None:
    # A diamond centred on the corner (0, 0): only the quarter in x, y >= 0 survives.
    diamond = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
    clipped = clip_polygon(diamond, 10.0, 10.0)
    assert {tuple(p) for p in clipped.round(6).tolist()} == {(0.0, 0.0), (0.0, 2.0), (2.0, 0.0)}


def test_rotated_square_box_and_area() -> None:
    # A square rotated by 45 degrees with tight box side 20 has side 20 / sqrt(2), area 200.
    ops = class_ops("square", np.pi / 4, 20.0, (30.0, 40.0))
    assert np.allclose(visible_box(ops, 100, 100), (20, 30, 40, 50))
    _, _, alpha = rasterize(ops)
    assert abs(alpha.sum() - 200.0) < 2.0  # anti-aliased coverage ~ exact area
    assert np.allclose(visible_box(ops, 35, 100), (20, 30, 35, 50))  # clipped at the right edge


def test_other_classes_and_crowd_regions(tmp_path, capsys):
    """A ShapesConfig with other classes and crowd regions: categories follow ``classes``, every image gets one
    iscrowd=1 box of at least a fifth of the image side, and generation says where and how much."""
    cfg = ShapesConfig(image_size=128, num_train=6, num_val=0, max_objects=3, seed=2,
                       classes=("pentagon", "diamond", "arrow"), crowd_prob=1.0)
    paths = generate_shapes(tmp_path, cfg, workers=1)
    out = capsys.readouterr().out
    assert f"-> {tmp_path}" in out and "6 train + 0 val images of 128 px" in out and "MB" in out
    data = json.loads(paths["train"].read_text())
    assert [c["name"] for c in data["categories"]] == ["pentagon", "diamond", "arrow"]
    crowds = [a for a in data["annotations"] if a["iscrowd"] == 1]
    assert len(crowds) == 6 and len({a["image_id"] for a in crowds}) == 6
    assert all(a["bbox"][2] >= 0.2 * 128 for a in crowds)
    with pytest.raises(ConfigError, match="classes"):
        ShapesConfig(classes=("circle", "blob"))
    with pytest.raises(ConfigError, match="crowd_prob"):
        ShapesConfig(crowd_prob=1.5)


def test_variants_stress_what_they_say():
    """'small' puts most objects on P3 and none above P5; 'crowded' has many objects per image."""
    import numpy as np

    from minidet.data.shapes_config import SHAPES_VARIANTS
    from minidet.data.shapes_scene import render_image

    def stats(cfg, n=24):
        sides, counts = [], []
        for i in range(n):
            _, objs, _ = render_image(cfg, np.random.default_rng([cfg.seed, 0, i]))
            counts.append(len(objs))
            sides += [((b[2] - b[0]) * (b[3] - b[1])) ** 0.5 for _, b in objs]
        return np.array(sides), np.mean(counts)

    small, _ = stats(SHAPES_VARIANTS["small"])
    default, n_default = stats(SHAPES_VARIANTS["default"])
    assert (small < 28.5).mean() > 0.65 > (default < 28.5).mean() and small.max() < 0.25 * 256 + 1
    _, n_crowded = stats(SHAPES_VARIANTS["crowded"])
    assert n_crowded > 2 * n_default
