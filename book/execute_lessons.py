"""Execute lessons in place, top to bottom, in full mode, with widget state stored.

    python book/execute_lessons.py                      # every lesson
    python book/execute_lessons.py lessons/03_*.ipynb   # some
    python book/execute_lessons.py lessons/04_*.ipynb --cells 24   # only cells that stand alone (they import
                                                        # what they use): their outputs are replaced, no timing

The committed notebooks (and so the book) carry the outputs of this full run. ``MINIDET_FAST`` is
removed from the kernel's environment so nothing is shrunk. Each execution's wall time is recorded in
``results/lessons/<lesson>.json`` with the machine, its load, the run folders under ``runs/`` present before
(a lesson reads its own back instead of training them) and those the execution created (trained), so a
lesson's "how long it takes" box can quote a measurement and say whether it was from scratch.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _full_mode():
    """``MINIDET_FAST`` removed from the environment the kernel inherits, restored afterwards."""
    env_fast = os.environ.pop("MINIDET_FAST", None)
    try:
        yield
    finally:
        if env_fast is not None:
            os.environ["MINIDET_FAST"] = env_fast


def execute(path: Path, timeout: int = 1800) -> float:
    nb = nbformat.read(path, as_version=4)
    with _full_mode():
        start = time.perf_counter()
        def started(cell, cell_index, **_):  # progress: which cell runs, so a stalled kernel can be located
            print(f"{path.name}: cell {cell_index} started at {time.perf_counter() - start:.0f} s", flush=True)

        NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True, on_cell_execute=started,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
    nbformat.write(nb, path)
    return seconds


def execute_cells(path: Path, cells: list[int], timeout: int = 1800) -> None:
    """Re-execute only ``cells`` of ``path`` (each must stand alone), in one fresh kernel, in order.

    For a cell that reads committed results (a zoo or claims table) after new results land: the rest of the
    notebook keeps the outputs of its full run. Each cell keeps its execution count (nbval needs one)."""
    nb = nbformat.read(path, as_version=4)
    for i in cells:
        if nb.cells[i].cell_type != "code":
            raise SystemExit(f"{path.name}: cell {i} is a {nb.cells[i].cell_type} cell, not a code cell")
    part = nbformat.v4.new_notebook(metadata=nb.metadata, cells=[nbformat.from_dict(dict(nb.cells[i])) for i in cells])
    with _full_mode():
        NotebookClient(part, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    for i, done in zip(cells, part.cells):
        count = nb.cells[i].execution_count or done.execution_count
        nb.cells[i].outputs = done.outputs
        nb.cells[i].execution_count = count
        for out in nb.cells[i].outputs:
            if "execution_count" in out:
                out["execution_count"] = count
    nbformat.write(nb, path)


def _run_folders() -> set[str]:
    """Finished-or-started run folders (``runs/<grid>/<variant>/seed<k>`` or ``runs/<name>``): those holding a checkpoint."""
    return {str(c.parent.relative_to(ROOT / "runs")) for c in (ROOT / "runs").glob("**/last.pt")}


def record(path: Path, seconds: float, before: set[str], after: set[str]) -> Path:
    """Write ``results/lessons/<stem>.json`` for one execution."""
    from minidet.engine.zoo import machine

    out = ROOT / "results" / "lessons" / f"{path.stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "lesson": path.name, "seconds": round(seconds, 1), "command": f"python book/execute_lessons.py lessons/{path.name}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "runs_present_before": sorted(before), "runs_created": sorted(after - before),
    }, indent=1))
    return out


def main(argv: list[str]) -> None:
    if "--cells" in argv:
        at = argv.index("--cells")
        (path,), cells = argv[:at], [int(c) for c in argv[at + 1:]]
        execute_cells(Path(path).resolve(), cells)
        print(f"{Path(path).name}: re-executed cells {cells}", flush=True)
        return
    paths = [Path(p).resolve() for p in argv] or sorted((ROOT / "lessons").glob("*.ipynb"))
    for p in paths:
        print(f"{p.name}: executing ...", flush=True)
        before = _run_folders()
        seconds = execute(p)
        print(f"{p.name}: done in {seconds:.0f} s -> {record(p, seconds, before, _run_folders())}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
