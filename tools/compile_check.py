"""Does ``torch.compile`` pay for the default recipe? One measurement, printed as a JSON line.

    python tools/compile_check.py [--steps 20] [--size 256]

Compiles the network part only (backbone, neck and head of the default tiny RetinaNet; the assignment and
losses stay eager, since their shapes follow the number of ground truths) for ONE fixed padded input size,
the best case for compilation, and times against eager, interleaved:

- ``compile_s``: the first compiled training step (forward and backward graphs), minus an eager step;
- ``eager_step_s`` / ``compiled_step_s``: medians of ``--steps`` steps after warm-up.

The whole-recipe speed-up it implies, for ``iters`` steps and ``n_sizes`` padded input sizes, is
``iters * eager / (n_sizes * compile_s + iters * compiled)``; the README compares it with the 1.2x goal.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from minidet.models import build_retinanet


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=2600, help="iterations of the recipe the speed-up is projected for")
    p.add_argument("--sizes", type=int, default=2, help="padded input sizes the recipe's scale jitter produces")
    args = p.parse_args()
    torch.manual_seed(0)
    models = {name: build_retinanet(num_classes=6, backbone="tiny", octave_base_scale=2.0).to(memory_format=torch.channels_last)
              for name in ("eager", "compiled")}
    models["compiled"].load_state_dict(models["eager"].state_dict())
    for part in ("backbone", "neck", "head"):
        getattr(models["compiled"], part).compile(dynamic=False)
    x = torch.rand(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)

    def targets():
        out = []
        for _ in range(args.batch):
            n = int(torch.randint(1, 12, (1,), generator=g))
            xy = torch.rand(n, 2, generator=g) * args.size * 0.7
            wh = 8 + torch.rand(n, 2, generator=g) * args.size * 0.3
            out.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, 6, (n,), generator=g)})
        return out

    opts = {k: torch.optim.AdamW(m.parameters(), 1e-4) for k, m in models.items()}

    def step(name: str) -> float:
        t0 = time.perf_counter()
        out = models[name](x, targets())
        loss = sum(v for k, v in out.items() if k.startswith("loss_"))
        opts[name].zero_grad()
        loss.backward()
        opts[name].step()
        return time.perf_counter() - t0

    first_eager = step("eager")
    first_compiled = step("compiled")
    times = {"eager": [], "compiled": []}
    for _ in range(args.steps):
        for name in times:
            times[name].append(step(name))
    eager, compiled = (statistics.median(times[k]) for k in ("eager", "compiled"))
    compile_s = first_compiled - eager
    projected = args.iters * eager / (args.sizes * compile_s + args.iters * compiled)
    print(json.dumps({"size": args.size, "batch": args.batch, "threads": torch.get_num_threads(), "first_eager_s": round(first_eager, 3),
                      "compile_s": round(compile_s, 1), "eager_step_s": round(eager, 4), "compiled_step_s": round(compiled, 4),
                      "step_speedup": round(eager / compiled, 3), "recipe_iters": args.iters, "padded_sizes": args.sizes,
                      "projected_recipe_speedup": round(projected, 3), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
