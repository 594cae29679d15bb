"""Markdown tables generated from ``results/``, written into the README and the book between markers.

A generated table sits between ``<!-- table:NAME -->`` and ``<!-- /table -->``; ``python -m minidet.engine.report``
rewrites every such block of the given files from the committed results, and ``--check`` fails when one is stale,
so a number in the README can always be traced to the results file it came from. Names:

* ``zoo:<folder>`` / ``curves:<folder>``: :func:`minidet.engine.zoo.zoo_table` / :func:`~minidet.engine.zoo.curve_table`
  of a zoo results folder (``<folder>/<model>/seed<k>/metrics.json``), e.g. ``zoo:results/zoo``;
* ``ablation:<folder>``: :func:`minidet.engine.ablation.default_grid_tables` of a default-recipe ablation grid's
  results (``results/ablations/<grid>[-<data variant>]/<variant>/seed<k>/metrics.json``), with paired differences;
* ``claims:<folder>``: :func:`minidet.engine.paired.claims_table`, each paper's claim beside the measured effect,
  from ``<folder>/<grid>/...`` (e.g. ``claims:results/ablations``);
* ``hours:<folder>[,<folder>...]``: :func:`training_hours`, how many runs the folders hold and the hours they trained;
* ``bench:<file>.jsonl``: :func:`bench_table`, the latest line of each setting of a benchmark log such as
  ``results/perf/bench_cpu.jsonl`` (written by ``tools/bench_cpu.sh``);
* ``results/<path>.json``: the ``table`` an ablation grid wrote with ``--results`` (see
  :mod:`minidet.engine.ablation`), preceded by the command that produced it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from minidet.errors import ConfigError

BLOCK = re.compile(r"(<!-- table:(?P<name>[^ ]+?) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _zoo(kind: str, root: str, base: Path) -> str:
    from minidet.engine import zoo

    folder = base / root
    if not any(folder.glob("*/seed*/metrics.json")):
        return f"(no finished run under `{root}` yet)"
    return (zoo.zoo_table if kind == "zoo" else zoo.curve_table)(folder)


def bench_table(path: Path) -> str:
    """One row per benchmark setting (``args`` and threads) of a ``python -m minidet.bench`` JSON-lines log,
    from its latest line: full training step, loss path alone and inference, minidet / torchvision, the
    speedups (torchvision's time over minidet's), peak memory, and when, how loaded and on what CPU."""
    latest: dict[tuple, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            latest[(rec.get("args", ""), rec.get("threads"))] = rec
    rows = ["| setting | threads | step minidet / tv (s) | speedup | loss path minidet / tv (s) | loss speedup | "
            "inference minidet / tv (s) | peak MiB, step | date, load, native bf16 |", "|---|---|---|---|---|---|---|---|---|"]
    for (args, threads), r in latest.items():
        rows.append(
            f"| `{args}` | {threads} | {r['minidet_s']:.3f} / {r['torchvision_s']:.3f} | **{r['speedup']:.2f}** | "
            f"{r['minidet_loss_s']:.3f} / {r['torchvision_loss_s']:.3f} | **{r['loss_speedup']:.2f}** | "
            f"{r['minidet_infer_s']:.3f} / {r['torchvision_infer_s']:.3f} | "
            f"{r['minidet_train_peak_mib']:.0f} / {r['torchvision_train_peak_mib']:.0f} | "
            f"{r.get('date', '?')[:10]}, {r.get('load_avg_1min', '?')}, {r.get('cpu_native_bf16', '?')} |")
    return "\n".join(rows)


def lesson_box(lesson: str, reads: tuple[str, ...] = (), trains: dict[str, int] | None = None,
               results_root: str | Path = "../results") -> str:
    """The box at the top of a lesson (markdown): how long its last full execution took
    (``results/lessons/<lesson>.json``, written by ``book/execute_lessons.py``), on what machine and load, which run
    folders it trained and which were already there (a lesson reads its finished runs back instead of training them,
    so only an execution that created all of them measures "from scratch"); an estimate of its training time from
    scratch, ``trains`` (``{model: training iterations the lesson runs}``) times the zoo's measured seconds per
    iteration (``results/zoo``); then what it reads from ``results/`` (``reads``) instead of training."""
    path = Path(results_root) / "lessons" / f"{lesson}.json"
    lines = ["**How long this lesson takes.** "]
    if path.is_file():
        rec = json.loads(path.read_text())
        m = rec["machine"]
        lines[0] += (f"Its last full execution (`{rec['command']}`) took **{rec['seconds'] / 60:.1f} min** on a "
                     f"{m['cores']}-core {m['cpu']} ({m['torch_threads']} torch thread(s), 1-minute load {m['load_avg_1min']} "
                     f"at the end), {rec['date'][:10]}. ")
        made, before = rec["runs_created"], rec["runs_present_before"]
        notebook = Path(results_root).parent / "lessons" / rec["lesson"]
        if notebook.is_file():  # keep the folders this lesson names (runs/<grid>/...), not every other run on the machine
            text = notebook.read_text()
            before = [r for r in before if f"runs/{r.split('/')[0]}" in text]
        if made:
            lines[0] += f"It trained {len(made)} run(s) from scratch ({', '.join(made)}). "
        else:
            lines[0] += "It trained nothing. "
        if before:
            lines[0] += (f"{len(before)} of its run folders already existed under `runs/` and were read back, not "
                         f"trained ({', '.join(before)}), so this time is not a from-scratch time. ")
    else:
        lines[0] += f"Not measured yet (no `{path.as_posix()}`). "
    if trains:
        import statistics

        from minidet.engine.zoo import load_results

        zoo = load_results(Path(results_root) / "zoo")
        spi = {m: statistics.median(r["seconds_per_iter"] for r in zoo[m] if r["seconds_per_iter"]) for m in trains if m in zoo}
        known = [f"{n} x {m} at {spi[m]:.2f} s" for m, n in trains.items() if m in spi]
        lines[0] += (f"From scratch its training is about **{sum(n * spi[m] for m, n in trains.items() if m in spi) / 60:.0f} min**"
                     f" ({' + '.join(known)} per iteration: the zoo's measured median, bf16 on CPUs with native bf16, two "
                     "runs side by side at one thread each; in fp32, on a CPU without native bf16, expect 2-3x that: RetinaNet "
                     "took 1.02 s per iteration on a 2-core AVX2 EPYC, `results/zoo-avx2-fp32`)")
        missing = [m for m in trains if m not in spi]
        lines[0] += (f", plus {', '.join(f'{trains[m]} x {m}' for m in missing)} iterations with no measured zoo time yet. "
                     if missing else ". ")
    lines[0] += "With `MINIDET_FAST=1` (as the tests run it) every cell runs in seconds."
    if reads:
        lines.append("**What it reads from `results/` instead of training:** " + "; ".join(reads) + ".")
    return "\n\n".join(lines)


def training_hours(folders: list[Path]) -> str:
    """One line per results folder of zoo records (``*/seed*/metrics.json``, nested folders included): the number
    of runs and their training hours, the sum of ``seconds_per_iter x timed_steps`` (each run trained on one thread,
    two side by side on a 2-core machine; a resumed run counts only its last call's steps, and evaluation is not
    counted), and the total."""
    rows, total = [], 0.0
    for folder in folders:
        recs = [json.loads(p.read_text()) for p in sorted(folder.glob("**/seed*/metrics.json"))]
        hours = sum((r.get("seconds_per_iter") or 0) * (r.get("timed_steps") or 0) for r in recs) / 3600
        total += hours
        rows.append(f"| `{folder.name}` | {len(recs)} | {hours:.1f} |")
    return "\n".join(["| results folder | runs | training hours (one thread each) |", "|---|---|---|", *rows,
                      f"| all | | **{total:.1f}** |"])


def render(name: str, base: Path) -> str:
    """The markdown of table ``name`` (see the module docstring), relative to the repository root ``base``."""
    kind, _, folder = name.partition(":")
    if kind in ("zoo", "curves") and folder:
        return _zoo(kind, folder, base)
    if kind == "ablation" and folder:
        from minidet.engine.ablation import DEFAULT_GRIDS, default_grid_tables

        grid = Path(folder).name.split("-")[0]
        if grid not in DEFAULT_GRIDS:
            raise ConfigError(f"table:{name}: the folder's name must start with a grid of {sorted(DEFAULT_GRIDS)}")
        if not any((base / folder).glob("*/seed*/metrics.json")):
            return f"(no finished run under `{folder}` yet)"
        return default_grid_tables(base / folder, grid)
    if kind == "hours" and folder:
        return training_hours([base / f for f in folder.split(",")])
    if kind == "claims" and folder:
        from minidet.engine.paired import claims_table

        return claims_table(base / folder)
    if kind == "bench" and folder:
        if not (base / folder).is_file():
            raise ConfigError(f"table:{name}: {base / folder} does not exist")
        return bench_table(base / folder)
    if name.startswith("results/") and name.endswith(".json"):
        path = base / name
        if not path.is_file():
            raise ConfigError(f"table:{name}: {path} does not exist")
        rec = json.loads(path.read_text())
        if "table" not in rec:
            raise ConfigError(f"table:{name}: {path} has no 'table' field")
        return f"`{rec.get('command', '')}` ->\n\n{rec['table']}" if rec.get("command") else rec["table"]
    raise ConfigError(f"unknown table name {name!r}: zoo:<folder>, curves:<folder>, ablation:<folder>, "
                      "claims:<folder>, hours:<folders>, bench:<file>.jsonl or results/<path>.json")


def update(text: str, base: Path) -> str:
    """``text`` with the body of every table block regenerated."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name"), base).rstrip("\n") + "\n" + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidet.engine.report")
    p.add_argument("files", nargs="*", default=["README.md"], help="markdown files with table blocks")
    p.add_argument("--root", default=".", help="repository root the results paths are relative to")
    p.add_argument("--check", action="store_true", help="only report stale blocks (exit 1 if any)")
    args = p.parse_args(argv)
    stale = []
    for f in args.files:
        path = Path(f)
        old = path.read_text()
        new = update(old, Path(args.root))
        if new != old:
            stale.append(f)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("stale generated tables in: " + ", ".join(stale) + " (run python -m minidet.engine.report)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
