"""Build the book: ``python -m book`` (from the repository root) -> ``book/_build/html/index.html``.

1. fetch the pinned page scripts once (book/vendor.py; needs npm the first time, never the network later);
2. stage the sources in ``book/_build/src``: the pages of ``book/`` and every ``lessons/NN_*.ipynb``;
3. run Sphinx (myst-nb renders the lessons' committed outputs, autosummary writes the API reference).

Sphinx builds incrementally: a second build re-reads only what changed. ``--clean`` starts over.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
BUILD = BOOK / "_build"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
PAGES = ("*.md",)  # the front matter and reference pages written for the book


def lesson_paths(lessons: Path = ROOT / "lessons") -> list[Path]:
    """The lessons, in order: ``lessons/NN_*.ipynb``."""
    return sorted(lessons.glob(LESSON_GLOB))


def _sync(files: list[Path], dest: Path) -> None:
    """Copy ``files`` into ``dest`` (keeping modification times, so Sphinx re-reads only changed ones) and
    remove what else ``dest`` holds at that level."""
    dest.mkdir(parents=True, exist_ok=True)
    names = {f.name for f in files}
    for old in dest.iterdir():
        if old.is_file() and old.name not in names:
            old.unlink()
    for f in files:
        target = dest / f.name
        if not target.exists() or target.stat().st_mtime_ns != f.stat().st_mtime_ns or target.stat().st_size != f.stat().st_size:
            shutil.copy2(f, target)


def stage(src: Path) -> list[Path]:
    """Put the book's pages and the lessons under ``src``; return the lessons staged."""
    pages = sorted({p for pattern in PAGES for p in BOOK.glob(pattern) if p.name != "README.md"})
    _sync(pages, src)
    lessons = lesson_paths()
    if not lessons:
        raise SystemExit(f"book: no lessons matching lessons/{LESSON_GLOB} under {ROOT}")
    _sync(lessons, src / "lessons")
    # results.md includes the README's "Measured results" section, and shows the zoo's curves figure
    # (python -m minidet.engine.zoo plot), both generated from results/
    _sync([ROOT / "README.md"] + [p for p in [ROOT / "results" / "zoo" / "curves.png"] if p.is_file()], src / "_include")
    return lessons


def build(out: Path | None = None, clean: bool = False, quiet: bool = True, strict: bool = False,
          warning_file: Path | None = None, work: Path = BUILD) -> Path:
    """Build the HTML book into ``out``; raise ``SystemExit`` with Sphinx's status on failure, and
    ``book.vendor.VendorError`` when the page scripts are missing and npm cannot fetch them. ``strict``
    turns every Sphinx warning into a failure (after building everything); ``warning_file`` collects them.
    ``work`` holds the staged sources, Sphinx's cache and (by default) ``html/``; the tests use a fresh one."""
    from sphinx.cmd.build import build_main

    from book.vendor import ensure_vendor

    start = time.perf_counter()
    ensure_vendor(BUILD / "vendor")
    out = out or work / "html"
    src, doctrees = work / "src", work / "doctrees"
    if clean:
        for d in (src, doctrees, out):
            shutil.rmtree(d, ignore_errors=True)
    lessons = stage(src)
    args = ["-b", "html", "-c", str(BOOK), "-d", str(doctrees), str(src), str(out)]
    args += ["-q"] * quiet + ["-W", "--keep-going"] * strict + ["-w", str(warning_file)] * (warning_file is not None)
    status = build_main(args)
    if status:
        raise SystemExit(f"book: sphinx-build failed (exit {status}); the messages above name the page and line")
    print(f"book: {len(lessons)} lessons -> {out / 'index.html'} in {time.perf_counter() - start:.0f} s")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m book", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default: {BUILD / 'html'})")
    p.add_argument("--clean", action="store_true", help="rebuild from scratch")
    p.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    p.add_argument("--strict", action="store_true", help="fail on any Sphinx warning (the HTML is still written)")
    args = p.parse_args(argv)
    from book.vendor import VendorError

    try:
        build(args.out, args.clean, quiet=not args.verbose, strict=args.strict)
    except VendorError as exc:
        raise SystemExit(f"book: {exc}") from None


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
