"""Plots for the MimicDet lesson: where a plain conv, RoIAlign and the S-head's guided deformable conv read,
refined anchors, the S/T cosine similarity during training, and inference time by stage.

Every drawing function takes a matplotlib ``Axes`` and leaves ``plt.show`` to the caller.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from minidet.boxes.ops import batched_box_iou
from minidet.models.heads.guided_deform import sampling_points
from minidet.viz.boxes import draw_detections
from minidet.viz.training import running_mean

LEVEL_NAMES = ("P3", "P4", "P5", "P6", "P7")


def conv_points(cx: float, cy: float, stride: int, kernel_size: int = 3) -> np.ndarray:
    """``(k^2, 2)`` pixel positions a plain ``k x k`` conv on a level of ``stride`` reads for the cell at ``(cx, cy)``."""
    r = np.arange(kernel_size) - kernel_size // 2
    ys, xs = np.meshgrid(r, r, indexing="ij")
    return np.stack([cx + xs.ravel() * stride, cy + ys.ravel() * stride], 1)


def roi_align_points(box: Sequence[float], output_size: int = 7, sampling_ratio: int = 1) -> np.ndarray:
    """``(n, 2)`` pixel positions RoIAlign (``aligned=False``) samples inside ``box``: ``sampling_ratio^2``
    regularly spaced points in each of the ``output_size^2`` bins."""
    x1, y1, x2, y2 = box
    n = output_size * sampling_ratio
    xs = x1 + (np.arange(n) + 0.5) * (x2 - x1) / n
    ys = y1 + (np.arange(n) + 0.5) * (y2 - y1) / n
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], 1)


@torch.no_grad()
def refinement_view(model: torch.nn.Module, image: Tensor) -> dict[str, Any]:
    """The refinement module and the S-head's offsets of a MimicDet on one image ``(3, H, W)``.

    Returns a dict with ``anchors`` ``(A, 4)``, ``refined`` ``(A, 4)``, ``objectness`` ``(A,)`` probabilities,
    ``level`` ``(A,)``, and ``points``: per level the S-head's sampling points ``(H_l, W_l, k^2, 2)`` in pixels.
    """
    model.eval()
    feats = model.features(image[None].to(model.device))
    r = model.refinement(feats)
    points = []
    for lvl, (f, d, stride) in enumerate(zip(feats, r.delta_maps, model.s_strides)):
        _, offsets = model.s_head.deform(lvl, f, d)
        k = int(round((offsets.shape[1] // 2) ** 0.5))
        points.append((sampling_points(offsets.float(), k)[0] * stride).cpu())  # cells -> pixels (anchor centres at cell x stride)
    level = torch.repeat_interleave(torch.arange(len(r.level_sizes)), torch.tensor(r.level_sizes))
    # on the CPU: a view for plotting, next to ground truths that come from the (CPU) dataset
    return {"anchors": r.anchors.cpu(), "refined": r.refined[0].cpu(), "objectness": torch.sigmoid(r.objectness[0].float()).cpu(),
            "level": level, "level_sizes": r.level_sizes, "points": points, "strides": model.s_strides}


def best_refined(view: dict[str, Any], gt_boxes: Tensor) -> list[dict[str, Any]]:
    """For every ground truth, the anchor whose *refined* box overlaps it most: its level, cell, anchor,
    refined box, IoUs before and after refinement, and the S-head's sampling points there (pixels)."""
    iou_ref = batched_box_iou(view["refined"], gt_boxes[None])[0]  # (A, G)
    iou_anc = batched_box_iou(view["anchors"], gt_boxes[None])[0]
    out = []
    for g in range(len(gt_boxes)):
        a = int(iou_ref[:, g].argmax())
        lvl = int(view["level"][a])
        first = sum(view["level_sizes"][:lvl])
        w = view["points"][lvl].shape[1]
        y, x = divmod(a - first, w)
        out.append({"gt": g, "anchor_index": a, "level": lvl, "cell": (y, x), "anchor": view["anchors"][a],
                    "refined": view["refined"][a], "iou_anchor": float(iou_anc[a, g]), "iou_refined": float(iou_ref[a, g]),
                    "best_anchor_iou": float(iou_anc[:, g].max()), "points": view["points"][lvl][y, x].cpu().numpy()})
    return out


def draw_refined_anchors(ax: Axes, image: Tensor | None, view: dict[str, Any], indices: Sequence[int] | Tensor | None = None,
                         top: int = 12, title: str | None = None) -> Axes:
    """Anchors (dashed), their refined boxes (solid) and an arrow from each anchor's centre to its refined box's
    centre: the anchors ``indices``, or the ``top`` the refinement module scores highest."""
    score = view["objectness"]
    idx = torch.as_tensor(indices, dtype=torch.long) if indices is not None else score.topk(min(top, len(score))).indices
    draw_detections(ax, image, view["anchors"][idx], color="white", linestyle="--")
    draw_detections(ax, None, view["refined"][idx], color="#E69F00")
    for a, r in zip(view["anchors"][idx].tolist(), view["refined"][idx].tolist()):
        ax.annotate("", xy=((r[0] + r[2]) / 2, (r[1] + r[3]) / 2), xytext=((a[0] + a[2]) / 2, (a[1] + a[3]) / 2),
                    arrowprops={"arrowstyle": "->", "color": "#E69F00", "lw": 1})
    ax.set_title(title or f"top {top} anchors (dashed) and their refined boxes (solid)", fontsize=9)
    return ax


def draw_sampling(ax: Axes, image: Tensor | None, item: dict[str, Any], stride: int, color: str = "#56B4E9",
                  title: str | None = None) -> Axes:
    """One object: its anchor (dashed), refined box (solid), where a plain conv of the same size would read
    (hollow squares) and where the guided deformable conv reads (dots)."""
    k = int(round(len(item["points"]) ** 0.5))
    a = item["anchor"].tolist()
    plain = conv_points((a[0] + a[2]) / 2, (a[1] + a[3]) / 2, stride, k)
    draw_detections(ax, image, item["anchor"][None], color="white", linestyle="--")
    draw_detections(ax, None, item["refined"][None], color=color)
    ax.plot(plain[:, 0], plain[:, 1], "s", mfc="none", mec="white", ms=5, label=f"plain {k}x{k} conv")
    ax.plot(item["points"][:, 0], item["points"][:, 1], "o", color=color, mec="k", ms=4, label="guided deformable conv")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_stat_curves(ax: Axes, rows: list[dict[str, Any]], key: str, window: int = 20,
                     colors: dict[str, str] | None = None) -> Axes:
    """``key`` of the training history of every run in ``rows`` (``run_grid``'s), smoothed over ``window``
    iterations: the mean over seeds per variant as a line, the range over seeds as a band."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for j, name in enumerate(variants):
        runs = [r for r in rows if r["variant"] == name]
        its = np.array([h["iter"] for h in runs[0]["history"]])
        vals = np.stack([running_mean(np.array([h[key] for h in r["history"]]), window) for r in runs])
        c = (colors or {}).get(name, f"C{j}")
        ax.plot(its, vals.mean(0), color=c, lw=2, label=f"{name} (mean of {len(runs)} seeds)")
        ax.fill_between(its, vals.min(0), vals.max(0), color=c, alpha=0.25, lw=0)
    ax.set_xlabel("iteration")
    return ax


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def train_step_seconds(model: torch.nn.Module, images: Tensor, targets: list[dict[str, Tensor]], repeats: int = 3) -> float:
    """Median seconds of one training step (forward, the sum of the ``loss_*`` terms, backward, an AdamW step)
    of ``model`` on one batch, after one warm-up step. The model's weights change: pass a copy."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    images = images.to(model.device)
    targets = [{k: v.to(model.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]

    def step() -> None:
        out = model(images, targets)
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return time_call(step, repeats)


@torch.inference_mode()
def stage_times(model: torch.nn.Module, images: Tensor, repeats: int = 5) -> dict[str, float]:
    """Median seconds of each inference stage of a MimicDet (backbone + FPN P3-P7, refinement module, S-head,
    post-processing) or a Faster R-CNN (backbone + FPN P2-P6, RPN with proposals, R-CNN head and
    post-processing), and of the whole ``model(images)``; ``images`` ``(B, 3, H, W)``."""
    from minidet.models import FasterRCNN, MimicDet
    from minidet.models.postprocess import postprocess_dense, postprocess_per_class

    model.eval()
    images = images.to(model.device)
    sizes = torch.tensor([images.shape[-2:]] * len(images), device=model.device)
    out: dict[str, float] = {}
    if isinstance(model, MimicDet):
        feats = model.features(images)
        r = model.refinement(feats)
        s = model.s_head(feats, r.delta_maps, with_feature=False)
        scores = s.cls_logits.softmax(-1)[..., :-1] * model.kept(r)[..., None]
        boxes = model.box_coder.decode(r.refined, s.deltas)
        out["backbone + FPN"] = time_call(lambda: model.features(images), repeats)
        out["refinement module"] = time_call(lambda: model.refinement(feats), repeats)
        out["S-head"] = time_call(lambda: model.s_head(feats, r.delta_maps, with_feature=False), repeats)
        out["post-processing"] = time_call(lambda: postprocess_dense(scores, boxes, r.level_sizes, sizes, model.score_thresh,
                                                                     model.topk_per_level, model.nms_thresh), repeats)
    elif isinstance(model, FasterRCNN):
        feats = model.features(images)
        proposals, _, valid, _ = model.rpn(feats, sizes)
        cls_logits, deltas, _ = model.rcnn_head(feats, proposals, images)
        scores = cls_logits.softmax(-1)[..., :-1] * valid[..., None]
        boxes = model.box_coder.decode(proposals[:, :, None, :], deltas)
        out["backbone + FPN"] = time_call(lambda: model.features(images), repeats)
        out["RPN + proposals"] = time_call(lambda: model.rpn(feats, sizes), repeats)
        out["R-CNN head"] = time_call(lambda: model.rcnn_head(feats, proposals, images), repeats)
        out["post-processing"] = time_call(lambda: postprocess_per_class(scores, boxes, sizes, model.score_thresh,
                                                                         model.nms_thresh), repeats)
    else:
        raise TypeError(f"stage_times: expected a MimicDet or a FasterRCNN, got {type(model).__name__}")
    out["total"] = time_call(lambda: model(images), repeats)
    return out
