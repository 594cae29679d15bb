"""The JavaScript the book's pages need, served from the book itself so nothing is fetched from a CDN.

Three npm packages, pinned with their registry integrity hashes, fetched once with ``npm pack`` (the
tarball only, no dependency tree) and trimmed to what the pages load:

* ``mathjax`` 3: the ``tex-chtml`` component, its woff fonts, the TeX extensions it loads on demand and
  the menu / assistive-MathML parts it lazy-loads;
* ``requirejs``: the AMD loader the ipywidgets manager needs;
* ``@jupyter-widgets/html-manager`` 1 (the one for ipywidgets 8): ``embed-amd.js``, which draws the
  widget state saved in the lessons.

They land in ``book/_build/vendor`` (ignored by git, about 7 MB) and are copied into the HTML's ``_static``.
"""
from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

# package@version -> (npm integrity, folder under vendor/, files to keep relative to the tarball's package/)
PACKAGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mathjax@3.2.2": (
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        "mathjax",
        ("LICENSE", "es5/tex-chtml.js", "es5/output/chtml/fonts/woff-v2/*", "es5/input/tex/extensions/*",
         "es5/ui/*", "es5/a11y/assistive-mml.js"),
    ),
    "requirejs@2.3.8": (
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        "requirejs",
        ("require.js", "README.md"),
    ),
    "@jupyter-widgets/html-manager@1.0.15": (
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        "html-manager",
        ("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff", "dist/embed.js.LICENSE.txt"),
    ),
}
STAMP = "vendor.json"
# tarfile's "data" filter (refuses links and paths outside dest) where this Python has it (3.10.12+, 3.11.4+)
SAFE = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


class VendorError(RuntimeError):
    """The vendored JavaScript is missing and cannot be fetched."""


def _npm_pack(spec: str, integrity: str, tmp: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(
            f"the book needs {spec} (and {len(PACKAGES) - 1} other npm packages) once, to serve MathJax and the widget "
            "manager from its own files; `npm` was not found. Install Node.js + npm (Debian: apt-get install npm), "
            "or copy book/_build/vendor from a machine where `python -m book` ran.")
    cmd = [npm, "pack", spec, "--json", "--prefer-offline", "--pack-destination", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0:
        raise VendorError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    info = json.loads(proc.stdout)[0]
    if info["integrity"] != integrity:
        raise VendorError(f"{spec}: npm integrity {info['integrity']} differs from the pinned {integrity}")
    return tmp / info["filename"]


def _extract(tarball: Path, patterns: tuple[str, ...], dest: Path) -> int:
    """Copy the members of ``tarball`` matching ``patterns`` (relative to ``package/``) into ``dest``."""
    count = 0
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            rel = member.name.removeprefix("package/")
            if member.isfile() and any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                member.name = rel
                tar.extract(member, dest, **SAFE)
                count += 1
    missing = [p for p in patterns if not any(dest.glob(p))]
    if missing:
        raise VendorError(f"{tarball.name}: nothing matches {missing}")
    return count


def ensure_vendor(dest: Path, log=print) -> Path:
    """Fill ``dest`` with the pinned, trimmed packages unless it already holds exactly them."""
    stamp = {spec: integrity for spec, (integrity, _, _) in PACKAGES.items()}
    if (dest / STAMP).is_file() and json.loads((dest / STAMP).read_text()) == stamp:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "vendor"
        for spec, (integrity, folder, patterns) in PACKAGES.items():
            n = _extract(_npm_pack(spec, integrity, Path(tmp)), patterns, staging / folder)
            log(f"book: vendored {spec} ({n} files)")
        (staging / STAMP).write_text(json.dumps(stamp, indent=1))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), dest)
    return dest
