"""Command line: ``minidet train``, ``minidet predict``, ``minidet eval`` and ``minidet check-data``
(also ``python -m minidet``).

``minidet train`` with no flags trains the default RetinaNet on freshly generated shapes data on the
best device present, evaluates it and prints COCO AP. On several GPUs:
``torchrun --nproc_per_node=4 -m minidet train ...`` (``--batch`` images per GPU; rank 0 logs, saves and evaluates).
``minidet predict runs/retinanet/last.pt photos/ --out predicted/`` draws a trained model's detections.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from minidet.engine.distributed import barrier, destroy_distributed, init_distributed, rank, world_size
from minidet.engine.evaluate import evaluate
from minidet.engine.experiment import MODELS, RunConfig, load_detector, make_datasets, resolve_data, run
from minidet.engine.loader import build_loader
from minidet.engine.precision import describe
from minidet.engine.trainer import TrainConfig
from minidet.errors import ConfigError, MinidetError
from minidet.losses.lrp import LRP_FORMS
from minidet.models import BACKBONES
from minidet.models.detectors.dense import CLS_LOSSES

DEFAULTS = RunConfig()
DEFAULT_TRAIN = TrainConfig(iters=2600, optimizer="adamw", lr=2e-3, weight_decay=0.05, warmup_iters=200, checkpoint_interval=200,
                            channels_last=True)


HELP = argparse.ArgumentDefaultsHelpFormatter  # every flag's help ends with "(default: ...)"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="shapes", help="'shapes' (built-in, generated on first use) or a COCO-style folder")
    p.add_argument("--data-root", default="data/shapes", help="where the shapes data is written")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (None: cuda if present, else cpu)")
    p.add_argument("--batch", type=int, default=DEFAULTS.batch_size, help="images per batch")
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="data-loading processes")


def build_parser() -> argparse.ArgumentParser:
    from minidet import __version__

    parser = argparse.ArgumentParser(prog="minidet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minidet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,predict,eval,check-data}")

    t = sub.add_parser("train", help="train a detector, evaluate it, write <out>/metrics.json", formatter_class=HELP)
    t.add_argument("--model", default=DEFAULTS.model, choices=MODELS, help="detector")
    t.add_argument("--backbone", default=DEFAULTS.backbone, choices=BACKBONES, help="backbone network")
    t.add_argument("--weights", default=None, help="backbone weights: a local file (a torchvision ResNet or a "
                   "TinyBackbone state dict) or 'shapes-pretrained' (the tiny backbone pretrained by "
                   "python -m minidet.models.backbones.pretrain); None: from scratch")
    t.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="start from another run's weights (fine-tuning; a new class count re-initialises the classifier "
                        "output); unlike resuming, the schedule starts at iteration 0")
    t.add_argument("--size", type=int, default=DEFAULTS.size, help="input image side in pixels")
    t.add_argument("--iters", type=int, default=DEFAULT_TRAIN.iters, help="training iterations")
    t.add_argument("--epochs", type=float, default=None, help="alternative to --iters: passes over the training set")
    t.add_argument("--optimizer", default=DEFAULT_TRAIN.optimizer, choices=("sgd", "adamw"), help="optimiser")
    t.add_argument("--lr", type=float, default=DEFAULT_TRAIN.lr, help="peak learning rate")
    t.add_argument("--weight-decay", type=float, default=DEFAULT_TRAIN.weight_decay, help="weight decay")
    t.add_argument("--warmup", type=int, default=DEFAULT_TRAIN.warmup_iters, help="warm-up iterations (at most iters / 5)")
    t.add_argument("--schedule", default=DEFAULT_TRAIN.schedule, choices=("cosine", "step", "constant"),
                   help="learning-rate decay after warm-up")
    t.add_argument("--anchor-scale", type=float, default=DEFAULTS.octave_base_scale,
                   help="anchor side / stride (RetinaNet paper: 4, ATSS paper: 8)")
    t.add_argument("--cls-loss", default="focal", choices=CLS_LOSSES,
                   help="focal loss or Progressive Focal Loss (UMOP): pfl as the paper's Eq. 4, pfl_official as the authors' code")
    t.add_argument("--lrp", action="store_true",
                   help="UMOP's level-wise resampling as minidet reads Eq. 1: each level by its own positives "
                        "(same as --level-norm own_positives)")
    t.add_argument("--level-norm", default=None, choices=LRP_FORMS,
                   help="normalisation of the classification loss over levels: pooled (None: pooled, or own_positives "
                        "with --lrp), own_positives (minidet's interpretation of UMOP Eq. 1) or code (the UMOP authors' code: equals pooled)")
    t.add_argument("--crowd", default="drop", choices=("drop", "ignore"),
                   help="iscrowd=1 annotations: dropped (their anchors are negatives), or ignore regions in assignment "
                        "(neither positive nor negative; measured in results/crowd/)")
    t.add_argument("--no-amp", action="store_true",
                   help="plain fp32: no autocast (otherwise bf16/fp16 autocast on CUDA, bf16 on a CPU with native bf16, else fp32)")
    t.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory layout (channels_last is faster on CPU)")
    t.add_argument("--sync-bn", action="store_true", help="under torchrun: batch-norm statistics over all GPUs (SyncBatchNorm)")
    t.add_argument("--checkpoint-every", type=int, default=DEFAULT_TRAIN.checkpoint_interval, help="iterations between checkpoints")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    t.add_argument("--out", default="runs/retinanet", help="run folder; an existing last.pt there is resumed")
    t.add_argument("--no-eval", action="store_true", help="skip the COCO evaluation after training")
    t.add_argument("--max-train-seconds", type=float, default=None,
                   help="stop training after this many seconds (with a checkpoint; a re-run resumes) and evaluate; None: no limit")
    t.add_argument("--skip-bad-records", action="store_true", help="drop malformed annotation records instead of refusing the dataset")
    _add_data_args(t)

    pr = sub.add_parser("predict", help="draw a checkpoint's detections on images, write predictions.json", formatter_class=HELP)
    pr.add_argument("checkpoint", help="a last.pt written by minidet train")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs ('imgs/*.jpg')")
    pr.add_argument("--out", default="predictions", help="folder for the drawn images and predictions.json")
    pr.add_argument("--score-thresh", type=float, default=0.3,
                    help="draw and record detections scoring above this (0.05 keeps what COCOeval would score)")
    pr.add_argument("--coco", default=None, metavar="ANN.json", help="COCO json whose image ids the records get (matched by file name)")
    pr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")

    c = sub.add_parser("check-data", help="validate a COCO-format dataset and list every problem")
    c.add_argument("annotations", help="COCO instances json")
    c.add_argument("--images", default=None, help="image folder: also check that every file exists, decodes and has its size")

    e = sub.add_parser("eval", help="evaluate a checkpoint with COCOeval", formatter_class=HELP)
    e.add_argument("checkpoint", help="a last.pt written by minidet train")
    e.add_argument("--out", default=None, help="write metrics.json here (None: next to the checkpoint)")
    e.add_argument("--no-amp", action="store_true", help="plain fp32 (otherwise the training precision rule, see train --no-amp)")
    _add_data_args(e)
    return parser


def level_norm(args: argparse.Namespace) -> bool | str:
    """The model's ``level_resampling`` from ``--lrp`` and ``--level-norm`` (they must agree when both are given)."""
    if args.level_norm is None:
        return args.lrp
    if args.lrp and args.level_norm != "own_positives":
        raise ConfigError(f"--lrp means --level-norm own_positives; got --level-norm {args.level_norm} as well")
    return args.level_norm


def _print_metrics(metrics: dict[str, float]) -> None:
    print("COCO bbox metrics (pycocotools):")
    print("  " + "  ".join(f"{k}={metrics[k]:.3f}" for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")))


def cmd_train(args: argparse.Namespace) -> int:
    device = init_distributed(args.device)  # under torchrun: join the process group, one GPU per process
    try:
        return _train(args, device)
    finally:
        destroy_distributed()


def _train(args: argparse.Namespace, device: torch.device) -> int:
    main_process, failure = rank() == 0, None
    if main_process:  # rank 0 generates the shapes data (once) while the others wait
        try:
            spec = resolve_data(args.data, args.data_root)
        except MinidetError as exc:
            failure = exc
    barrier()
    if failure is not None:
        raise failure
    if not main_process:
        spec = resolve_data(args.data, args.data_root)
    iters = args.iters
    if args.epochs is not None:
        from minidet.data import CocoDetection  # only to count images

        n = len(CocoDetection(spec.train_ann, spec.train_images))
        iters = max(1, round(args.epochs * n / (args.batch * world_size())))
    train = TrainConfig(
        iters=iters or DEFAULT_TRAIN.iters, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        warmup_iters=min(args.warmup, max(1, (iters or DEFAULT_TRAIN.iters) // 5)), schedule=args.schedule,
        amp=not args.no_amp, channels_last=not args.no_channels_last, checkpoint_interval=args.checkpoint_every, seed=args.seed,
        sync_bn=args.sync_bn,
    )
    cfg = RunConfig(model=args.model, backbone=args.backbone, weights=args.weights, size=args.size,
                    batch_size=args.batch, workers=args.workers, octave_base_scale=args.anchor_scale, train=train,
                    init_from=args.init_from, skip_bad_records=args.skip_bad_records, crowd=args.crowd,
                    model_kwargs={"cls_loss": args.cls_loss, "level_resampling": level_norm(args)})
    if not main_process:
        run(spec, cfg, args.out, device=str(device), progress=False, evaluate_after=False)
        return 0
    print(f"minidet: training {args.model} ({args.backbone}) for {train.iters} iterations on {device}, data {args.data} -> {args.out}")
    result = run(spec, cfg, args.out, device=str(device), evaluate_after=not args.no_eval, max_train_seconds=args.max_train_seconds)
    print(f"trained in {result['train_seconds']:.0f} s")
    trainer = result["trainer"]
    summary = {"iterations": result["iterations"], "of_iters": train.iters, "train_seconds": round(result["train_seconds"], 2),
               "it_per_s": round(result["steps_this_call"] / max(result["train_seconds"], 1e-9), 3), "device": str(device),
               "precision": describe(trainer.device, trainer.amp_dtype), "eval_seconds": round(result.get("eval_seconds", 0.0), 2)}
    (Path(args.out) / "run.json").write_text(json.dumps(summary, indent=1))
    if "metrics" in result:
        _print_metrics(result["metrics"])
        print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    model, mc = load_detector(args.checkpoint)
    spec = resolve_data(args.data, args.data_root)
    _, val = make_datasets(spec, int(mc["size"]))
    if mc["num_classes"] != val.num_classes:
        raise MinidetError(f"{args.checkpoint} was trained for {mc['num_classes']} classes, {spec.val_ann} has {val.num_classes}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    metrics = evaluate(model.to(device), build_loader(val, args.batch, train=False, num_workers=args.workers), device, progress=True,
                       amp=not args.no_amp)
    _print_metrics(metrics)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Draw and record detections of every input image; exit status 1 when some input could not be used."""
    from minidet.engine.predict_files import expand_inputs, predict_files
    from minidet.engine.predictor import load

    files, problems = expand_inputs(args.inputs)
    for line in problems:
        print(f"minidet predict: {line}", file=sys.stderr)
    if not files:
        raise MinidetError("no image to predict on: " + "; ".join(problems))
    predictor = load(args.checkpoint, args.device)
    print(f"minidet: {predictor} on {len(files)} image{'s' * (len(files) != 1)} -> {args.out}")
    records, skipped = predict_files(predictor, files, args.out, args.score_thresh, args.coco)
    for line in skipped:
        if not line.startswith("skipped"):  # unreadable images were already reported under the progress bar
            print(f"minidet predict: {line}", file=sys.stderr)
    print(f"wrote {len(files) - sum(m.startswith('skipped') for m in skipped)} images and {len(records)} detections "
          f"(score > {args.score_thresh:g}) to {Path(args.out) / 'predictions.json'}")
    return 1 if problems or skipped else 0


def cmd_check_data(args: argparse.Namespace) -> int:
    """Print every problem, then the warnings; exit status 1 when there is a problem, 0 otherwise (warnings too)."""
    from minidet.data.check import check_dataset

    warnings: list[str] = []
    problems = check_dataset(args.annotations, args.images, warnings)
    for line in problems:
        print(line)
    for line in warnings:
        print(f"warning: {line}")
    tail = f", {len(warnings)} warning{'s' * (len(warnings) != 1)}" if warnings else ""
    print(f"{args.annotations}: {len(problems)} problem{'s' * (len(problems) != 1)} found{tail}" + ("" if problems else " (clean)"))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # plain `minidet`: say what there is
        parser.print_help()
        return 0
    try:
        commands = {"train": cmd_train, "predict": cmd_predict, "eval": cmd_eval, "check-data": cmd_check_data}
        return commands[args.command](args)
    except MinidetError as exc:
        print(f"minidet: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
