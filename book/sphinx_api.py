"""Sphinx glue for the API reference: one page per module of ``minidet``, written before each build.

Every function and class is documented once (autodoc), on the page of the module that defines it
(``minidet.losses.focal.sigmoid_focal_loss``). Students import it from the package
(``from minidet.losses import sigmoid_focal_loss``), so a package page lists the names the package exports
(its ``__all__``), each linked to its definition, and then its modules. New modules and subpackages appear
without editing anything here.

The pages are written here rather than by ``autosummary :recursive:``, which resolves a module whose name
a package re-binds (``minidet.engine.evaluate``, module and function) to the function and loses the module.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from sphinx.application import Sphinx

PACKAGE = "minidet"
API_DIR = "api"


def module_names(package: str = PACKAGE) -> list[str]:
    """``package`` and all its modules and subpackages, except private ones (``_x``, ``__main__``)."""
    pkg = importlib.import_module(package)
    found = [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    return [package] + sorted(n for n in found if not any(part.startswith("_") for part in n.split(".")))


def summary(obj) -> str:
    """The first paragraph of ``obj``'s docstring on one line (empty when there is none)."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def exports(module) -> list[tuple[str, str]]:
    """``(dotted name of the definition, summary)`` of the classes and functions in ``module.__all__``."""
    rows = []
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            rows.append((f"{obj.__module__}.{obj.__qualname__}", summary(obj)))
    return rows


def _table(rows: list[tuple[str, str]]) -> list[str]:
    lines = [".. list-table::", "   :widths: 35 65", ""]
    for left, right in rows:
        lines += [f"   * - {left}", f"     - {right or ' '}"]
    return lines + [""]


def page(name: str, names: list[str]) -> str:
    """reST source of the page of module ``name``."""
    module = importlib.import_module(name)
    lines = [name, "=" * len(name), "", f".. automodule:: {name}"]
    children = [n for n in names if n.rpartition(".")[0] == name]
    if not hasattr(module, "__path__"):
        return "\n".join(lines) + "\n"
    lines += ["   :no-members:", ""]
    rows = exports(module)
    if rows:
        lines += [".. rubric:: Exported names", "",
                  f"Import them with ``from {name} import ...``; each links to the module that defines it.", ""]
        lines += _table([(f":py:obj:`~{target}`", text) for target, text in rows])
    if children:
        lines += [".. rubric:: Modules", ""]
        lines += _table([(f":doc:`{child} <{child}>`", summary(importlib.import_module(child))) for child in children])
        lines += [".. toctree::", "   :hidden:", ""] + [f"   {child}" for child in children]
    return "\n".join(lines) + "\n"


def write_pages(app: Sphinx) -> None:
    """Write ``api/<module>.rst`` for every module (only files whose text changed) and drop stale ones."""
    out = Path(app.srcdir) / API_DIR
    out.mkdir(exist_ok=True)
    names = module_names()
    for name in names:
        path, text = out / f"{name}.rst", page(name, names)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    for stale in set(out.glob("*.rst")) - {out / f"{n}.rst" for n in names}:
        stale.unlink()


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", write_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
