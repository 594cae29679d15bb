"""What Progressive Focal Loss's gamma and alpha did per level over the zoo-budget UMOP runs (no training).

    python tools/pfl_trajectory.py --out results/atss-gap/pfl_trajectory.json

Reads every ``results/ablations/umop/<variant>/seed<k>/history.json`` whose records carry ``levels/pfl_gamma``
(the PFL rows of RetinaNet and ATSS) and prints, per run and pyramid level (P3-P7):

* gamma, alpha and the mean positive probability p̄ (``levels/pos_prob``) at a quarter, half and the end of training;
* the share of logged steps after the first quarter at which gamma sat on its lower clip (``gamma - delta``, 1.5
  with the defaults): there PFL is a fixed focal loss with gamma 1.5 and alpha 0.5 / 1.5 = 0.33 rather than the
  baseline's gamma 2 and alpha 0.25.

That share tells how much of a run PFL spent as "a focal loss with other constants"; a fixed-constant FL run
(gamma 1.5, alpha 0.33) is the control that separates the progressive part from the constants.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

LEVELS = ("P3", "P4", "P5", "P6", "P7")


def summarize_run(history: list[dict], lower_clip: float = 1.5, tol: float = 1e-3) -> dict:
    """Per-level gamma / alpha / p̄ at 1/4, 1/2 and the end of a run and the share of steps (after the first
    quarter) with gamma at ``lower_clip``."""
    recs = [r for r in history if "levels/pfl_gamma" in r]
    if not recs:
        raise ValueError("history has no 'levels/pfl_gamma' records: not a PFL run")
    last_iter = recs[-1]["iter"]
    picks = {}
    for name, frac in (("quarter", 0.25), ("half", 0.5), ("end", 1.0)):
        r = min(recs, key=lambda r: abs(r["iter"] - frac * last_iter))
        picks[name] = {"iter": r["iter"], "gamma": r["levels/pfl_gamma"], "alpha": r["levels/pfl_alpha"],
                       "pos_prob": r["levels/pos_prob"]}
    late = [r for r in recs if r["iter"] > 0.25 * last_iter]
    n_lv = len(recs[0]["levels/pfl_gamma"])
    at_clip = [sum(abs(r["levels/pfl_gamma"][i] - lower_clip) < tol for r in late) / len(late) for i in range(n_lv)]
    return {"iters": last_iter, "snapshots": picks, "share_at_lower_clip_after_quarter": at_clip}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--results-dir", default="results/ablations/umop")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = {"command": f"python tools/pfl_trajectory.py --out {args.out}", "levels": LEVELS, "runs": {}}
    for hist in sorted(Path(args.results_dir).glob("*/seed*/history.json")):
        history = json.loads(hist.read_text())
        if not any("levels/pfl_gamma" in r for r in history):
            continue
        key = f"{hist.parent.parent.name}/{hist.parent.name}"
        s = out["runs"][key] = summarize_run(history)
        print(f"{key} ({s['iters']} iterations)")
        for name, snap in s["snapshots"].items():
            fmt = lambda v: " ".join(f"{x:5.2f}" for x in v)  # noqa: E731
            print(f"  {name:7s} it {snap['iter']:5d}  gamma {fmt(snap['gamma'])}  alpha {fmt(snap['alpha'])}"
                  f"  p̄ {fmt(snap['pos_prob'])}")
        print("  share of steps after the first quarter with gamma at 1.5: "
              + " ".join(f"{lv} {100 * v:3.0f} %" for lv, v in zip(LEVELS, s["share_at_lower_clip_after_quarter"])))
    if not out["runs"]:
        raise SystemExit(f"no PFL history under {args.results_dir}")
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
