"""Positives per object of RetinaNet's max-IoU assignment and of ATSS, on the shapes validation images.

    python tools/positives_per_object.py --out results/atss-gap/positives_per_object.json

Both with the default recipe's anchors (``octave_base_scale`` 2: RetinaNet 9 anchors per cell, ATSS one square
anchor per cell), at 256 px, no training involved: the assignment alone.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from minidet.boxes.ops import pad_targets
from minidet.data import collate_detection
from minidet.engine.experiment import build_model, make_datasets, resolve_data


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--data-root", default="data/shapes")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    _, val = make_datasets(resolve_data("shapes", args.data_root), 256)
    rec = {"command": f"python tools/positives_per_object.py --out {args.out}", "images": args.images, "models": {}}
    for name in ("retinanet", "atss"):
        m = build_model(name, val.num_classes, octave_base_scale=2.0)
        counts = []
        for i in range(0, min(args.images, len(val)), 8):
            batch = collate_detection([val[j] for j in range(i, min(i + 8, args.images, len(val)))])
            sizes = [(math.ceil(batch.images.shape[-2] / s), math.ceil(batch.images.shape[-1] / s)) for s in m.neck.strides]
            per_level = m.anchor_generator(sizes, "cpu")
            anchors = torch.cat(per_level)
            gb, _, gv = pad_targets(batch.targets, "cpu")
            a = (m.assigner.assign(anchors, [len(x) for x in per_level], gb, gv) if name == "atss"
                 else m.assigner.assign(anchors, gb, gv))
            per = torch.zeros(gb.shape[:2]).scatter_add_(1, a.matched_gt.clamp(min=0), a.pos.float())
            counts += per[gv].tolist()
        t = torch.tensor(counts)
        rec["models"][name] = {"anchors_per_image": int(anchors.shape[0]), "objects": len(t),
                               "objects_without_positive": int((t == 0).sum()), "median": float(t.median()),
                               "mean": round(float(t.mean()), 3)}
        print(name, rec["models"][name], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
