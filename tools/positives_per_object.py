"""Positives per object of RetinaNet's max-IoU assignment, of ATSS and of FCOS, on the shapes validation images.

    python tools/positives_per_object.py --out results/atss-gap/positives_per_object.json

RetinaNet and ATSS with the default recipe's anchors (``octave_base_scale`` 2: RetinaNet 9 anchors per cell, ATSS
one square anchor per cell); FCOS with COCO's scale ranges and centre sampling (the zoo's FCOS, ``fcos``) and with
the ranges scaled by 1/4 (lesson 05's, ``fcos_quarter_ranges``); at 256 px, no training involved: the assignment
alone.
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
    from minidet.assigners.fcos import scaled_ranges

    kwargs = {"fcos_quarter_ranges": {"scale_ranges": scaled_ranges(0.25)}}
    for name in ("retinanet", "atss", "fcos", "fcos_quarter_ranges"):
        m = build_model(name.split("_")[0], val.num_classes, octave_base_scale=2.0, **kwargs.get(name, {}))
        counts = []
        for i in range(0, min(args.images, len(val)), 8):
            batch = collate_detection([val[j] for j in range(i, min(i + 8, args.images, len(val)))])
            sizes = [(math.ceil(batch.images.shape[-2] / s), math.ceil(batch.images.shape[-1] / s)) for s in m.neck.strides]
            gb, _, gv = pad_targets(batch.targets, "cpu")
            if name.startswith("fcos"):
                anchors, strides, level_sizes = m.point_generator.grid(sizes, "cpu")  # points, one per cell
                a = m.assigner.assign(anchors, strides, m.level_index(level_sizes, "cpu"), gb, gv)
            else:
                per_level = m.anchor_generator(sizes, "cpu")
                anchors = torch.cat(per_level)
                a = (m.assigner.assign(anchors, [len(x) for x in per_level], gb, gv) if name == "atss"
                     else m.assigner.assign(anchors, gb, gv))
            per = torch.zeros(gb.shape[:2]).scatter_add_(1, a.matched_gt.clamp(min=0), a.pos.float())
            counts += per[gv].tolist()
        t = torch.tensor(counts)
        rec["models"][name] = {"anchors_per_image": int(anchors.shape[0]), "objects": len(t),
                               "quartiles": [float(q) for q in torch.quantile(t, torch.tensor([0.25, 0.5, 0.75]))],
                               "objects_without_positive": int((t == 0).sum()), "median": float(t.median()),
                               "mean": round(float(t.mean()), 3)}
        print(name, rec["models"][name], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
