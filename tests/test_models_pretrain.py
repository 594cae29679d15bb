"""The tiny backbone pretrained by classification on shapes crops: the crops, the run, the file, the loading."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import roi_align

from minidet.cli import main as minidet_main
from minidet.data import ShapesConfig, generate_shapes
from minidet.data.shapes_crops import PRETRAIN_SEED, CropConfig, crops_from_coco, object_windows, pretrain_scenes
from minidet.data.shapes_scene import render_image
from minidet.engine.checkpoint import load_checkpoint
from minidet.engine.experiment import build_model, load_detector
from minidet.errors import CheckpointError, ConfigError
from minidet.models import factory
from minidet.models.backbones import TinyBackbone
from minidet.models.backbones.pretrain import main as pretrain_main
from minidet.models.backbones.pretrain import PretrainConfig, random_flips, to_input
from minidet.models.factory import build_backbone

SCENES = (6, 3)  # train, held-out scenes of the smoke run: a few seconds of rendering


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain-shapes")
    return generate_shapes(root, pretrain_scenes(*SCENES), workers=1, progress=False)


@pytest.fixture(scope="module")
def smoke_file(scenes, tmp_path_factory):
    """The backbone file of a 3-step pretraining run on the :func:`scenes`, through the command line; seed 1, so
    that it is not the initialisation a seed-0 detector run draws by itself."""
    out = tmp_path_factory.mktemp("weights") / "tiny.pt"
    root = scenes["train"].parents[1]
    assert pretrain_main(["--out", str(out), "--steps", "3", "--batch", "16", "--crop", "32", "--eval-every", "2", "--seed", "1",
                          "--scenes", *map(str, SCENES), "--data-root", str(root), "--no-progress"]) == 0
    return out


def _objects(scenes, split="train"):
    coco = json.loads(scenes[split].read_text())
    per = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        per.setdefault(a["image_id"], []).append((a["category_id"], np.array([x, y, x + w, y + h])))
    return coco, per


def test_a_crop_holds_an_object_of_its_class_at_the_drawn_scale(scenes):
    cfg = CropConfig()
    crops = crops_from_coco(scenes["train"], scenes["train_images"], cfg)
    coco, per = _objects(scenes)
    assert crops.images.shape == (len(crops.labels), 3, cfg.size, cfg.size) and crops.images.dtype == torch.uint8
    assert set(crops.labels.tolist()) == set(range(len(coco["categories"]) + 1))  # every class and background
    lo, hi = cfg.object_frac
    for label, win, image_id in zip(crops.labels.tolist(), crops.boxes.double().numpy(), crops.image_ids.tolist()):
        side = win[2] - win[0]
        assert side == pytest.approx(win[3] - win[1]) and 0 <= win.min() and win.max() <= coco["images"][0]["width"]
        objs = per.get(image_id, [])
        if label == 0:  # background: no box reaches into the crop
            assert all(np.any(b[2:] <= win[:2]) or np.any(b[:2] >= win[2:]) for _, b in objs)
            continue
        inside = [(b[2:] - b[:2]).max() / side for k, b in objs
                  if k == label and np.all(b[:2] >= win[:2] - 1e-6) and np.all(b[2:] <= win[2:] + 1e-6)]
        assert any(lo - 1e-6 <= f <= hi + 1e-6 for f in inside), (label, win, objs)


def test_crop_pixels_are_the_scene_window(scenes):
    """Each crop is its window of the scene resized: compare with torchvision's RoIAlign of the same window."""
    crops = crops_from_coco(scenes["train"], scenes["train_images"])
    coco = json.loads(scenes["train"].read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    i = int(crops.image_ids[0])
    pick = (crops.image_ids == i).nonzero().flatten()
    scene = torch.from_numpy(np.array(Image.open(scenes["train_images"] / names[i]).convert("RGB"))).permute(2, 0, 1)
    rois = torch.cat([torch.zeros(len(pick), 1), crops.boxes[pick]], 1)
    ref = roi_align(scene[None].float(), rois, crops.images.shape[-1], aligned=True)
    err = (ref - crops.images[pick].float()).abs().mean((1, 2, 3))
    other = (ref - crops.images[pick].roll(1, 0).float()).abs().mean((1, 2, 3))  # another window of the scene
    assert torch.all(err < other / 3), (err, other)


def test_a_window_is_dropped_when_a_larger_object_of_another_class_fills_it():
    boxes = np.array([[100.0, 100, 120, 120], [118, 100, 140, 122]])  # a 20 px object beside a 22 px one
    cfg = CropConfig(crops_per_object=200)
    rng = np.random.default_rng(0)
    win, lab = object_windows(boxes, np.array([1, 2]), 256, cfg, rng)
    small = win[lab == 1]
    big = boxes[1]
    inter = np.clip(np.minimum(small[:, 2:], big[2:]) - np.maximum(small[:, :2], big[:2]), 0, None).prod(1)
    assert 0 < len(small) < cfg.crops_per_object  # some kept, some dropped
    assert np.all(inter / (big[2:] - big[:2]).prod() < cfg.ambiguous_inside)
    assert (lab == 2).sum() == cfg.crops_per_object  # the larger object has no rival
    win_same, _ = object_windows(boxes, np.array([1, 1]), 256, cfg, np.random.default_rng(0))
    assert len(win_same) == 2 * cfg.crops_per_object  # the same class is no rival


def test_no_pretraining_scene_is_a_detection_image(scenes):
    default = ShapesConfig()
    assert pretrain_scenes().seed == PRETRAIN_SEED != default.seed
    assert {k: v for k, v in pretrain_scenes().to_dict().items() if k not in ("seed", "num_train", "num_val")} == \
        {k: v for k, v in default.to_dict().items() if k not in ("seed", "num_train", "num_val")}
    ours = [np.asarray(Image.open(p)) for split in ("train_images", "val_images") for p in sorted(scenes[split].iterdir())[:3]]
    for split_id in (0, 1):  # the default config's train and validation images 0..2
        for i in range(3):
            theirs = render_image(default, np.random.default_rng([default.seed, split_id, i]))[0]
            assert not any(np.array_equal(theirs, o) for o in ours)


def test_flips_and_normalisation():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    x = to_input(images, channels_last=False)
    assert torch.allclose(x, build_model("retinanet", 2).normalize(images.float() / 255))
    y = random_flips(x, torch.Generator().manual_seed(0))
    kinds = [[torch.equal(y[i], f(x[i])) for f in (lambda t: t, lambda t: t.flip(2), lambda t: t.flip(1),
                                                    lambda t: t.flip(1).flip(2))] for i in range(len(x))]
    assert all(any(k) for k in kinds) and len({k.index(True) for k in kinds}) > 1


def test_the_smoke_run_writes_a_small_fp16_backbone_that_loads_exactly(smoke_file):
    state = torch.load(smoke_file, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    meta = json.loads(smoke_file.with_suffix(".json").read_text())
    assert meta["steps"] == 3 and 0 <= meta["accuracy"] <= 1 and meta["file_bytes"] == smoke_file.stat().st_size
    assert {"seconds", "command", "scenes", "crops", "torch", "history"} <= set(meta)
    assert meta["scenes"]["seed"] == PRETRAIN_SEED and [r["step"] for r in meta["history"]] == [2, 3]
    bb = build_backbone("tiny", weights_path=smoke_file)
    own = bb.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert own[k].dtype == (torch.float32 if v.is_floating_point() else v.dtype)
        assert torch.equal(own[k], v.to(own[k].dtype)), k
    assert not torch.equal(own["stem.0.weight"], TinyBackbone().state_dict()["stem.0.weight"])


def test_a_file_that_does_not_fit_names_the_file_and_the_key(smoke_file, tmp_path):
    state = torch.load(smoke_file, weights_only=True)
    renamed = {("stem.9.weight" if k == "stem.0.weight" else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"renamed\.pt.*stem\.0\.weight.*stem\.9\.weight"):
        build_backbone("tiny", weights_path=tmp_path / "renamed.pt")
    state["stages.3.0.0.weight"] = torch.zeros(7, 128, 3, 3, dtype=torch.float16)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"shape\.pt.*stages\.3\.0\.0\.weight.*\(7, 128, 3, 3\)"):
        build_backbone("tiny", weights_path=tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone("tiny", weights_path=tmp_path / "missing.pt")


def test_shapes_pretrained_names_the_shipped_file(smoke_file, tmp_path, monkeypatch):
    monkeypatch.setattr(factory, "PRETRAINED_TINY", tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match=r"absent\.pt.*python -m minidet\.models\.backbones\.pretrain"):
        build_model("retinanet", 6, weights="shapes-pretrained")
    with pytest.raises(ConfigError, match="resnet18"):
        build_model("retinanet", 6, backbone="resnet18", weights="shapes-pretrained")
    monkeypatch.setattr(factory, "PRETRAINED_TINY", smoke_file)
    model = build_model("fcos", 6, weights="shapes-pretrained")
    assert torch.equal(model.backbone.stem[0].weight, build_backbone("tiny", smoke_file).stem[0].weight)


def test_a_checkpoint_restores_after_the_weights_file_is_gone(smoke_file, tiny_shapes, tmp_path, monkeypatch):
    shipped = tmp_path / "shipped.pt"
    shutil.copy(smoke_file, shipped)
    monkeypatch.setattr(factory, "PRETRAINED_TINY", shipped)
    out = tmp_path / "run"
    assert minidet_main(["train", "--data", str(tiny_shapes["root"]), "--iters", "2", "--size", "96", "--batch", "4",
                         "--workers", "0", "--out", str(out), "--device", "cpu", "--no-eval",
                         "--weights", "shapes-pretrained"]) == 0
    shipped.unlink()
    model, mc = load_detector(out / "last.pt")
    assert mc["weights"] == "shapes-pretrained" and mc["backbone"] == "tiny"
    saved = load_checkpoint(out / "last.pt")["model"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items() if k in saved)
    start = torch.load(smoke_file, weights_only=True)["stem.0.weight"].float()  # 2 small steps from the file
    moved = (model.backbone.stem[0].weight - start).abs().max()
    assert moved < (TinyBackbone().stem[0].weight - start).abs().max() / 10
    with torch.no_grad():
        assert len(model(torch.rand(1, 3, 96, 96))) == 1


def test_bad_pretraining_arguments_are_refused():
    with pytest.raises(ConfigError, match="batch_size = 0"):
        PretrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"CropConfig\.object_frac"):
        CropConfig(object_frac=(0.9, 0.3))
