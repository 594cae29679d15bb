"""Post-processing cost of a trained dense detector at batch 8: one NMS over the whole batch grouped by
(image, class) (minidet before this change) against one class-wise NMS per image (now, as torchvision).

    python tools/bench_postprocess.py CHECKPOINT IMAGE_DIR [--batch 8] [--repeats 20] [--score-thresh 0.05]

Runs the network once, then times only the post-processing of its outputs, alternating the two forms, and
checks they return the same detections. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torchvision.io import read_image
from torchvision.ops import batched_nms

from minidet.boxes.ops import clip_boxes
from minidet.engine.experiment import load_detector
from minidet.models.postprocess import nms_per_image, postprocess_dense


def whole_batch_nms(scores, boxes, level_sizes, image_sizes, score_thresh, topk, nms_thresh, max_det):
    """The former form: the same top-k per level, then ONE batched_nms over (image, class) groups."""
    bsz, _, c = scores.shape
    boxes = clip_boxes(boxes, image_sizes)
    ss, bb, ll = [], [], []
    for s, b in zip(scores.split(level_sizes, 1), boxes.split(level_sizes, 1)):
        top_s, idx = s.reshape(bsz, -1).topk(min(topk, s.shape[1] * c), dim=1)
        ss.append(top_s), ll.append(idx % c), bb.append(torch.gather(b, 1, (idx // c)[..., None].expand(-1, -1, 4)))
    s, b, lab = torch.cat(ss, 1), torch.cat(bb, 1), torch.cat(ll, 1)
    img = torch.arange(bsz)[:, None].expand_as(s)
    keep = s > score_thresh
    s, b, lab, img = s[keep], b[keep], lab[keep], img[keep]
    kept = batched_nms(b, s, img * c + lab, nms_thresh)
    out = []
    for i in range(bsz):
        sel = kept[img[kept] == i][:max_det]
        out.append({"boxes": b[sel], "scores": s[sel], "labels": lab[sel]})
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("images")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--score-thresh", type=float, default=None, help="default: the model's own")
    args = p.parse_args()
    model, mc = load_detector(args.checkpoint)
    files = sorted(Path(args.images).glob("*.png"))[: args.batch]
    size = int(mc["size"])
    images = torch.stack([torch.nn.functional.interpolate(read_image(str(f))[None, :3].float() / 255, size=(size, size))[0]
                          for f in files])
    sizes = torch.tensor([[size, size]] * len(files))
    with torch.no_grad():
        scores, boxes, level_sizes = model.predict_dense(images, sizes)
    thr = model.score_thresh if args.score_thresh is None else args.score_thresh
    settings = (thr, model.topk_per_level, model.nms_thresh, model.max_detections)
    forms = {"whole_batch": lambda: whole_batch_nms(scores, boxes, level_sizes, sizes, *settings),
             "per_image": lambda: postprocess_dense(scores, boxes, level_sizes, sizes, *settings)}
    a, b = forms["whole_batch"](), forms["per_image"]()
    same = all(torch.equal(x["labels"], y["labels"]) and torch.allclose(x["scores"], y["scores"]) for x, y in zip(a, b))
    times = {k: [] for k in forms}
    for _ in range(args.repeats):
        for k, fn in forms.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    candidates = int((scores > thr).sum())
    print(json.dumps({"checkpoint": args.checkpoint, "batch": len(files), "size": size, "score_thresh": thr,
                      "candidates_above_thresh": candidates, "kept_per_image": [len(d["scores"]) for d in b],
                      "whole_batch_ms": round(1e3 * med["whole_batch"], 2), "per_image_ms": round(1e3 * med["per_image"], 2),
                      "speedup": round(med["whole_batch"] / med["per_image"], 2), "same_detections": same}))


if __name__ == "__main__":
    main()
