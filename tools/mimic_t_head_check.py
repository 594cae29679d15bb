"""Why lesson 07's T-head box loss rises after ~70 iterations: log it next to the positives among the sampled RoIs.

    python tools/mimic_t_head_check.py --iters 200 --out results/lessons/07_t_head_positives.json

Trains MimicDet with lesson 07's recipe (``lesson_run_config``, the lesson's data) for ``--iters`` iterations of its
500-iteration schedule (no checkpoint is written) and records, every 10 iterations, the mean over that window of
``loss_t_box``, ``loss_t_cls``, ``stats/t_num_pos`` (positives among the T-head's sampled RoIs, per image),
``stats/refine_num_pos`` and ``loss_refine_box``.
``loss_t_box`` is a sum over the positive RoIs divided by *all* sampled RoIs, so it grows with the positives'
share even while each positive's error falls.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from minidet.engine.experiment import lesson_run_config, resolve_data

KEYS = ("loss_t_box", "loss_t_cls", "stats/t_num_pos", "stats/refine_num_pos", "loss_refine_box")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--data-root", default="data/shapes")
    p.add_argument("--out", default="results/lessons/07_t_head_positives.json")
    args = p.parse_args()
    spec = resolve_data("shapes", args.data_root)
    cfg = lesson_run_config(iters=500)  # lesson 07's schedule (500 iterations), cut after --iters
    cfg.model, cfg.model_kwargs = "mimicdet", {"mimic": True}
    from minidet.engine import Trainer, build_loader
    from minidet.engine.experiment import build_model, make_datasets

    torch.manual_seed(cfg.train.seed)
    train_ds, _ = make_datasets(spec, cfg.size, cfg.train.seed, cfg.scale_jitter)
    model = build_model(cfg.model, train_ds.num_classes, cfg.backbone, None, cfg.octave_base_scale, **cfg.model_kwargs)
    loader = build_loader(train_ds, cfg.batch_size, train=True, num_workers=cfg.workers, seed=cfg.train.seed)
    trainer = Trainer(model, loader, cfg.train, out_dir=None, device="cpu")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.train.seed)
    trainer.model.train()
    for batch in trainer._batches():  # the steps of Trainer.fit, stopped early (the schedule stays the lesson's)
        trainer.advance(trainer.train_step(batch))
        if trainer.iteration % 50 == 0:
            print(f"iteration {trainer.iteration}, {time.perf_counter() - t0:.0f} s", flush=True)
        if trainer.iteration >= args.iters:
            break
    trainer._flush()
    rows = trainer.history.rows
    rows = [r for r in rows if r["iter"] <= args.iters]
    windows = []
    for start in range(0, len(rows), args.window):
        chunk = rows[start:start + args.window]
        windows.append({"iter": chunk[-1]["iter"], **{k: round(sum(r[k] for r in chunk) / len(chunk), 5) for k in KEYS}})
    rec = {"command": f"python tools/mimic_t_head_check.py --iters {args.iters}", "recipe": "lesson 07 (lesson_run_config, 500-iteration schedule, cut)",
           "train_seconds": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads(),
           "load_1min_end": round(os.getloadavg()[0], 2), "windows": windows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rec, f, indent=1)
    for w in windows:
        print(w)


if __name__ == "__main__":
    main()
