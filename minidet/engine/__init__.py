"""Engine: training loop, evaluation, checkpoints, loaders and distributed helpers."""
from minidet.engine.checkpoint import load_checkpoint, save_checkpoint
from minidet.engine.evaluate import coco_metrics, detections_to_coco, evaluate
from minidet.engine.history import History
from minidet.engine.loader import ResumableSampler, build_loader
from minidet.engine.schedule import lr_factor
from minidet.engine.trainer import TrainConfig, Trainer

__all__ = [
    "History", "ResumableSampler", "TrainConfig", "Trainer", "build_loader", "coco_metrics",
    "detections_to_coco", "evaluate", "load_checkpoint", "lr_factor", "save_checkpoint",
]
