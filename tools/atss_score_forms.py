"""ATSS's two inference scorings on one trained checkpoint: mmdetection's (threshold the product of class
score and centerness at 0.05) and the authors' (threshold the class score at 0.05, score sqrt(cls * ctr)).

    python tools/atss_score_forms.py runs/zoo/atss/seed1/last.pt --out results/atss-gap/score_forms_seed1.json

Same weights, same validation images; only the post-processing differs (``ATSS.score_form``). A third row,
``cls_only``, ranks by the class score alone (no centerness), to see what the centerness branch adds.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import types

import torch

from minidet.engine import build_loader, evaluate
from minidet.engine.experiment import load_detector, make_datasets, resolve_data

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--data-root", default="data/shapes")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    model, cfg = load_detector(args.checkpoint)
    _, val = make_datasets(resolve_data("shapes", args.data_root), cfg.get("size", 256))
    loader = build_loader(val, 8, train=False)
    rec = {"checkpoint": args.checkpoint, "command": f"python tools/atss_score_forms.py {args.checkpoint} --out {args.out}",
           "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"), "forms": {}}
    for form in ("mmdet", "authors"):
        model.score_form = form
        m = evaluate(model, loader, "cpu")
        rec["forms"][form] = {k: round(m[k], 5) for k in METRICS}
        print(form, rec["forms"][form], flush=True)
    def cls_only(self, images, image_sizes):  # the class score alone, mmdetection's threshold on it
        cls_logits, box_deltas, _, anchors, level_sizes = self.dense_outputs(images)
        return torch.sigmoid(cls_logits.float()), self.box_coder.decode(anchors[None], box_deltas.float()), level_sizes

    model.score_form = "mmdet"
    model.predict_dense = types.MethodType(cls_only, model)
    m = evaluate(model, loader, "cpu")
    rec["forms"]["cls_only"] = {k: round(m[k], 5) for k in METRICS}
    print("cls_only", rec["forms"]["cls_only"], flush=True)
    rec["load_1min_end"] = round(os.getloadavg()[0], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
