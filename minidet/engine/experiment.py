"""One call from "which data, which model" to a trained, evaluated detector on disk.

Shared by the command line (``minidet train``) and the lessons, so both run the same recipe.
A run folder holds ``last.pt`` (checkpoint), ``history.json`` (per-iteration losses) and
``metrics.json`` (COCOeval stats under ``AP, AP50, AP75, APs, APm, APl``).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from minidet.data import CocoDetection, ShapesConfig, build_transforms, generate_shapes
from minidet.data.coco_validate import unused_categories
from minidet.engine.evaluate import evaluate
from minidet.engine.loader import build_loader
from minidet.engine.trainer import TrainConfig, Trainer
from minidet.errors import ConfigError, DatasetError
from minidet.losses.lrp import lrp_form
from minidet.models import (build_atss, build_dw, build_faster_rcnn, build_fcos, build_libra_rcnn, build_mimicdet,
                            build_retinanet)

MODELS = ("retinanet", "atss", "fcos", "dw", "faster_rcnn", "libra_rcnn", "mimicdet")
TWO_STAGE_MODELS = ("faster_rcnn", "libra_rcnn")  # their anchor size is one scale per level: anchor_scale
SOFTMAX_MODELS = TWO_STAGE_MODELS + ("mimicdet",)  # softmax classifiers, one anchor size per level
POINT_MODELS = ("fcos", "dw")  # anchor-free: no anchor size to set
FAST_ENV = "MINIDET_FAST"
NOT_MODEL_KWARGS = ("model", "num_classes", "size", "class_names", "category_ids")  # model_config keys about data


def fast_mode() -> bool:
    """True when ``MINIDET_FAST`` is set to a non-empty value other than ``0``: the tests set it so
    that every lesson cell runs in seconds."""
    return os.environ.get(FAST_ENV, "") not in ("", "0")


@dataclass
class DataSpec:
    """Where the images and annotations are. Build with :func:`resolve_data`."""

    train_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path


def resolve_data(data: str = "shapes", root: str | Path = "data/shapes", shapes: ShapesConfig | None = None) -> DataSpec:
    """``"shapes"``: generate (once) the built-in shapes data under ``root``. Otherwise ``data`` is a
    COCO-style folder with ``annotations/instances_train*.json`` and ``annotations/instances_val*.json``
    next to image folders named after the json (``train2017/`` for ``instances_train2017.json``, or ``train/``)."""
    if data == "shapes":
        p = generate_shapes(root, shapes or ShapesConfig())
        return DataSpec(p["train"], p["train_images"], p["val"], p["val_images"])
    folder = Path(data)
    if not folder.is_dir():
        raise DatasetError(f"--data {data!r}: not 'shapes' and not a folder")
    found = {}
    for split in ("train", "val"):
        anns = sorted((folder / "annotations").glob(f"instances_{split}*.json"))
        if not anns:
            raise DatasetError(f"--data {folder}: no annotations/instances_{split}*.json")
        ann = anns[0]
        suffix = ann.stem[len("instances_"):]
        images = next((folder / n for n in (suffix, split, "images") if (folder / n).is_dir()), None)
        if images is None:
            raise DatasetError(f"--data {folder}: no image folder {suffix!r} or {split!r} for {ann.name}")
        found[split] = (ann, images)
    return DataSpec(found["train"][0], found["train"][1], found["val"][0], found["val"][1])


@dataclass
class RunConfig:
    """The whole recipe: data, model and training. ``minidet train`` fills it from its flags."""

    model: str = "retinanet"
    backbone: str = "tiny"
    weights: str | None = None  # backbone weights file, or "shapes-pretrained" (tiny backbone); None: from scratch
    size: int = 256
    batch_size: int = 8
    workers: int = 1
    octave_base_scale: float = 2.0
    scale_jitter: tuple[float, float] = (0.8, 1.0)
    skip_bad_records: bool = False
    init_from: str | None = None  # a checkpoint of another run to start from (fine-tuning), see run()
    crowd: str = "drop"  # iscrowd=1 boxes: "drop" them, or "ignore" regions in assignment (results/crowd/: no gain measured)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_kwargs: dict[str, Any] = field(default_factory=dict)


def build_model(model: str, num_classes: int, backbone: str = "tiny", weights: str | None = None,
                octave_base_scale: float = 4.0, **kwargs) -> torch.nn.Module:
    """Build a detector by name (the one place the command line turns a string into a model). ``kwargs`` go
    to the factory, e.g. ``cls_loss="pfl"``, ``level_resampling="code"`` (or another of
    :data:`~minidet.losses.lrp.LRP_FORMS`; ``True`` is ``"own_positives"``), or ``scale_ranges`` for FCOS.

    ``octave_base_scale`` sets the anchor size of the anchor-based models (the two-stage models, whose RPN
    has one anchor size per level, get ``anchor_scale = 2 x octave_base_scale`` unless given, MimicDet, whose anchors
    sit one level coarser, ``anchor_scale = octave_base_scale``: the same sizes in pixels); the point detectors
    (:data:`POINT_MODELS`: FCOS, Dual Weighting) have no anchors and ignore it, so one run configuration
    (and its checkpoints' ``model_config``) serves every model."""
    builders = {"retinanet": build_retinanet, "atss": build_atss, "fcos": build_fcos, "dw": build_dw,
                "faster_rcnn": build_faster_rcnn, "libra_rcnn": build_libra_rcnn, "mimicdet": build_mimicdet}
    if model not in builders:
        raise ConfigError(f"unknown model {model!r}; choose one of {MODELS}")
    if model in SOFTMAX_MODELS:
        if kwargs.pop("cls_loss", "focal") != "focal" or lrp_form(kwargs.pop("level_resampling", False)) != "pooled":
            raise ConfigError(f"{model} classifies with a softmax: --cls-loss pfl and --lrp apply to the dense models")
        kwargs.setdefault("anchor_scale", (1 if model == "mimicdet" else 2) * octave_base_scale)
    elif model not in POINT_MODELS:
        kwargs["octave_base_scale"] = octave_base_scale
    return builders[model](num_classes, backbone=backbone, weights_path=weights, **kwargs)


def load_detector(checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the detector a ``minidet train`` / :func:`run` checkpoint was saved from and load its weights.

    Returns ``(model in eval mode, model_config)``; ``model_config`` also holds ``size``, ``class_names`` and
    ``category_ids`` (the dataset's id of each label; checkpoints older than that field lack it) and ``weights``
    (what the backbone started from, :attr:`RunConfig.weights`; the file is not read again).
    """
    from minidet.engine.checkpoint import load_checkpoint, load_model_state

    state = load_checkpoint(checkpoint, map_location="cpu")
    mc = dict(state.get("model_config") or {})
    if "model" not in mc:
        raise ConfigError(f"{checkpoint} has no model_config: it was not written by minidet train")
    kwargs = {k: v for k, v in mc.items() if k not in NOT_MODEL_KWARGS}
    # the checkpoint holds every trained weight: the backbone's starting weights (mc["weights"]) are a record of
    # how the run began, not needed here, and their file may be gone
    kwargs["weights"] = None
    model = build_model(mc["model"], mc["num_classes"], **kwargs)
    load_model_state(model, state["model"], str(checkpoint))
    return model.to(device).eval(), mc


def init_from_checkpoint(model: torch.nn.Module, checkpoint: str | Path, model_name: str | None = None,
                         verbose: bool = True) -> tuple[list[str], list[str]]:
    """Load the matching tensors of another run's checkpoint into ``model`` (fine-tuning) and print which were
    loaded and which kept their fresh initialisation (:func:`~minidet.engine.checkpoint.init_from_state`).

    Raises:
        ConfigError: the checkpoint is of another detector than ``model_name``, or shares no tensor with ``model``.
    """
    from minidet.engine.checkpoint import init_from_state, load_checkpoint, summarize_init

    state = load_checkpoint(checkpoint, map_location="cpu")
    theirs = (state.get("model_config") or {}).get("model")
    if model_name is not None and theirs is not None and theirs != model_name:
        raise ConfigError(f"--init-from {checkpoint}: it holds a {theirs} model, this run trains {model_name} "
                          f"(pass --model {theirs})")
    loaded, skipped = init_from_state(model, state["model"])
    if not loaded:
        raise ConfigError(f"--init-from {checkpoint}: no tensor fits this model (another backbone?)")
    if verbose:
        print(summarize_init(str(checkpoint), loaded, skipped))
    return loaded, skipped


def make_datasets(spec: DataSpec, size: int, seed: int = 0, scale_jitter: tuple[float, float] = (0.8, 1.0),
                  skip_bad_records: bool = False, crowd: str = "drop") -> tuple[CocoDetection, CocoDetection]:
    """Training set (flip + scale jitter; crowd boxes as ``crowd``, see :class:`CocoDetection`) and validation
    set (resize only) at input side ``size``. A dataset with malformed records is refused unless
    ``skip_bad_records``; categories without any training annotation are named in a printed warning."""
    train = CocoDetection(spec.train_ann, spec.train_images, build_transforms(True, size, scale_jitter=scale_jitter),
                          seed=seed, skip_bad_records=skip_bad_records, crowd=crowd)
    val = CocoDetection(spec.val_ann, spec.val_images, build_transforms(False, size), skip_bad_records=skip_bad_records)
    for ds in (train, val):
        if ds.skipped_records:
            print(f"minidet: skipped {ds.skipped_records} bad records of {ds.ann_file} (see minidet check-data)")
    for line in unused_categories(train.coco.dataset, spec.train_ann):
        print(f"minidet: warning: {line}")
    if train.class_names != val.class_names:
        raise DatasetError(f"{spec.train_ann} and {spec.val_ann} have different categories: {train.class_names} vs {val.class_names}")
    return train, val


def run(spec: DataSpec, cfg: RunConfig, out: str | Path, device: str | None = None, progress: bool = True,
        evaluate_after: bool = True, max_train_seconds: float | None = None) -> dict[str, Any]:
    """Train ``cfg`` on ``spec``, evaluate on the validation split, write the run folder ``out``.

    Resumes from ``out/last.pt`` when present. Otherwise, with ``cfg.init_from``, starts from that checkpoint's
    weights (:func:`init_from_checkpoint`; the optimiser and schedule start fresh). Returns ``{"metrics": ..., "history": ..., "model": ...,
    "train_seconds": ..., "eval_seconds": ...}``. Under ``torchrun`` every process trains its share of each
    batch (DistributedDataParallel; ``cfg.batch_size`` is per process) and rank 0 alone evaluates and writes.
    """
    from minidet.engine.distributed import init_distributed, rank

    torch.manual_seed(cfg.train.seed)
    device = str(init_distributed(device))
    train_ds, val_ds = make_datasets(spec, cfg.size, cfg.train.seed, cfg.scale_jitter, cfg.skip_bad_records, cfg.crowd)
    model_config = {"model": cfg.model, "num_classes": train_ds.num_classes, "backbone": cfg.backbone,
                    "weights": None if cfg.weights is None else str(cfg.weights),
                    "octave_base_scale": cfg.octave_base_scale, "size": cfg.size, "class_names": list(train_ds.class_names),
                    "category_ids": list(train_ds.cat_ids), **cfg.model_kwargs}
    model = build_model(cfg.model, train_ds.num_classes, cfg.backbone, cfg.weights, cfg.octave_base_scale, **cfg.model_kwargs)
    out = Path(out)
    if cfg.init_from is not None and not (out / "last.pt").is_file():
        init_from_checkpoint(model, cfg.init_from, cfg.model, verbose=rank() == 0)
    pin = torch.device(device).type == "cuda"
    loader = build_loader(train_ds, cfg.batch_size, train=True, num_workers=cfg.workers, seed=cfg.train.seed, pin_memory=pin)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, loader, cfg.train, out_dir=out, device=device, model_config=model_config)
    t0 = time.perf_counter()
    history = trainer.fit(progress=progress, max_seconds=max_train_seconds)
    train_seconds = time.perf_counter() - t0
    result: dict[str, Any] = {"model": trainer.model, "history": history, "train_seconds": train_seconds, "trainer": trainer,
                              "iterations": trainer.iteration, "steps_this_call": trainer.iteration - trainer.fit_start_iteration}
    if evaluate_after and rank() == 0:
        t0 = time.perf_counter()
        val_loader = build_loader(val_ds, cfg.batch_size, train=False, num_workers=cfg.workers, pin_memory=pin)
        metrics = evaluate(trainer.model, val_loader, device=device, progress=progress, amp=cfg.train.amp)
        result["eval_seconds"] = time.perf_counter() - t0
        result["metrics"] = metrics
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return result


def lesson_data(root: str | Path = "../data") -> DataSpec:
    """The shapes data a lesson uses: the full 2000/300-image set, or in fast mode (``MINIDET_FAST``) a
    40/16-image set in its own folder, so both can live side by side."""
    root = Path(root)
    if fast_mode():
        return resolve_data("shapes", root / "shapes-fast", ShapesConfig(num_train=40, num_val=16, seed=0))
    return resolve_data("shapes", root / "shapes", ShapesConfig())


_FAST_RUNS: Path | None = None


def _fast_runs_root() -> Path:
    """A temporary folder for this process's fast-mode runs, removed when the process (the lesson's kernel) exits."""
    global _FAST_RUNS
    if _FAST_RUNS is None:
        _FAST_RUNS = Path(tempfile.mkdtemp(prefix="minidet-fast-runs-"))
        atexit.register(shutil.rmtree, _FAST_RUNS, True)
    return _FAST_RUNS


def lesson_run_dir(name: str, root: str | Path = "../runs") -> Path:
    """Run folder of a lesson: ``root/name``. In fast mode (the tests) ``name-fast`` in a temporary folder that
    is removed when the kernel exits, so the checkpoints of the tests' 3-iteration runs (tens of MB per lesson)
    neither pile up in the checkout nor get resumed by a full run."""
    return _fast_runs_root() / f"{name}-fast" if fast_mode() else Path(root) / name


def lesson_run_config(iters: int = 1200, **train_overrides) -> RunConfig:
    """The default recipe (see ``minidet train``) with ``iters`` iterations; 3 iterations in fast mode.
    ``train_overrides`` replace :class:`TrainConfig` fields (e.g. ``warmup_iters`` for a short run)."""
    kw: dict[str, Any] = dict(iters=iters, optimizer="adamw", lr=2e-3, weight_decay=0.05, warmup_iters=200,
                              log_interval=20, checkpoint_interval=0, channels_last=True)
    kw.update(train_overrides)
    if fast_mode():
        kw.update(iters=3, warmup_iters=1, log_interval=1)
    train = TrainConfig(**kw)
    return RunConfig(batch_size=4 if fast_mode() else 8, workers=0 if fast_mode() else 1, train=train)
