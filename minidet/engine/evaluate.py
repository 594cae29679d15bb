"""COCO evaluation with pycocotools: the same numbers papers report.

Detections are mapped back to the original image size and to the dataset's category ids, then
scored by :class:`pycocotools.cocoeval.COCOeval` (AP averaged over IoU 0.50:0.95, AP50, AP75, and AP
for small / medium / large objects: area below 32^2, between 32^2 and 96^2, above 96^2 pixels).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from minidet.engine.precision import autocast, autocast_dtype

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def detections_to_coco(detections: list[dict[str, torch.Tensor]], targets: list[dict[str, Any]], image_sizes: torch.Tensor,
                       label_to_cat_id: dict[int, int]) -> list[dict[str, Any]]:
    """Turn a batch of detections into COCO result records.

    Boxes are predicted on the (resized) input image of size ``image_sizes[i]``; they are rescaled to the
    original size ``targets[i]["orig_size"]`` and written as ``[x, y, w, h]``.
    """
    records = []
    for det, tgt, size in zip(detections, targets, image_sizes.tolist()):
        oh, ow = (int(v) for v in tgt["orig_size"])
        sy, sx = oh / size[0], ow / size[1]
        boxes = det["boxes"].detach().float().cpu() * torch.tensor([sx, sy, sx, sy])
        boxes[:, 2:] -= boxes[:, :2]
        for box, score, label in zip(boxes.tolist(), det["scores"].tolist(), det["labels"].tolist()):
            records.append({"image_id": int(tgt["image_id"]), "category_id": label_to_cat_id[int(label)],
                            "bbox": [round(v, 2) for v in box], "score": round(float(score), 5)})
    return records


def coco_metrics(coco_gt: COCO, results: list[dict[str, Any]], image_ids: list[int] | None = None,
                 verbose: bool = False) -> dict[str, float]:
    """Run COCOeval (bbox) on result records; returns ``{"AP": ..., "AP50": ..., ...}`` in [0, 1].

    With no detections at all every metric is 0 (pycocotools itself cannot load an empty result list).
    """
    if not results:
        return {k: 0.0 for k in METRIC_NAMES}
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(buf.getvalue())
    # pycocotools reports -1 where a category/area has no ground truth; keep that visible but numeric.
    return {k: float(v) for k, v in zip(METRIC_NAMES, ev.stats)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device | None = None, progress: bool = False,
             verbose: bool = False, amp: bool = True) -> dict[str, float]:
    """COCO metrics of ``model`` on ``loader``'s dataset (a :class:`~minidet.data.CocoDetection`).

    Args:
        model: a minidet detector (eval mode returns ``boxes``, ``scores``, ``labels`` per image).
        loader: yields :class:`~minidet.data.collate.ImageBatch` (see :func:`minidet.engine.loader.build_loader`).
        verbose: print pycocotools' summary table.
        amp: run the network in the precision training uses (:func:`~minidet.engine.precision.autocast_dtype`:
            bf16 autocast on CUDA and on CPUs with native bf16, else fp32); post-processing is in fp32 either way.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}``.
    """
    dataset = loader.dataset
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    dtype = autocast_dtype(device, amp)
    results, image_ids = [], []
    for batch in tqdm(loader, disable=not progress, desc="eval", dynamic_ncols=True):
        batch = batch.to(device, non_blocking=True)
        with autocast(device, dtype):
            detections = model(batch.images, image_sizes=batch.image_sizes)
        results += detections_to_coco(detections, batch.targets, batch.image_sizes.cpu(), dataset.label_to_cat_id)
        image_ids += [int(t["image_id"]) for t in batch.targets]
    model.train(was_training)
    return coco_metrics(dataset.coco, results, image_ids, verbose=verbose)
