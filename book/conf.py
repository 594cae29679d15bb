"""Sphinx configuration of the minidet book (built by ``python -m book``; see book/build.py).

The sources are staged into ``book/_build/src`` (these pages + ``lessons/NN_*.ipynb``); the lessons are
rendered from their committed outputs (no execution), and every script a page needs (MathJax, RequireJS,
the ipywidgets HTML manager) is served from ``_static``, so building and reading need no network.
"""
from __future__ import annotations

import sys
from pathlib import Path

BOOK = Path(__file__).resolve().parent
sys.path.insert(0, str(BOOK.parent))  # `book.sphinx_lessons`; minidet itself is pip-installed

import minidet  # noqa: E402

project = "minidet"
author = "the minidet authors"
release = version = minidet.__version__
html_title = "minidet: object detection, piece by piece"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "book.sphinx_lessons",
    "book.sphinx_api",
]
exclude_patterns = ["_build", "_include", "**.ipynb_checkpoints"]

# --- notebooks: rendered from their saved outputs (a full run, book/execute_lessons.py) ----------------
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_merge_streams = True

# --- scripts served by the book itself (book/vendor.py fills this folder) -------------------------------
VENDOR = BOOK / "_build" / "vendor"
html_static_path = [str(VENDOR), "static"]  # static/: the book's own glue script
mathjax_path = "mathjax/es5/tex-chtml.js"
# Non-empty, so myst-parser keeps the MathJax 3 form of the configuration (Sphinx 9 defaults to MathJax 4).
mathjax3_config = {"options": {"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}
nb_ipywidgets_js = {"requirejs/require.js": {}, "minidet_widgets.js": {}, "html-manager/dist/embed-amd.js": {}}

# --- API reference: book/sphinx_api.py writes api/<module>.rst for every module (never `__main__`) ------
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False  # torch / torchvision base-class docstrings are not ours to render
add_module_names = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# --- theme (sphinx-book-theme ships its fonts and icons; no repository or launch buttons) --------------
html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "use_download_button": True,
    "use_fullscreen_button": False,
}
html_context = {"default_mode": "light"}  # figures and widgets are drawn on white
html_show_sourcelink = True
html_copy_source = True
