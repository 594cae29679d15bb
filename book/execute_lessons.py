"""Execute lessons in place, top to bottom, in full mode, with widget state stored.

    python book/execute_lessons.py                      # every lesson
    python book/execute_lessons.py lessons/03_*.ipynb   # some

The committed notebooks (and so the book) carry the outputs of this full run. ``MINIDET_FAST`` is
removed from the kernel's environment so nothing is shrunk.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout: int = 3600) -> float:
    nb = nbformat.read(path, as_version=4)
    env_fast = os.environ.pop("MINIDET_FAST", None)
    try:
        start = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
    finally:
        if env_fast is not None:
            os.environ["MINIDET_FAST"] = env_fast
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> None:
    paths = [Path(p).resolve() for p in argv] or sorted((ROOT / "lessons").glob("*.ipynb"))
    for p in paths:
        print(f"{p.name}: executing ...", flush=True)
        print(f"{p.name}: done in {execute(p):.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
