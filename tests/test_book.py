"""The web book: `python -m book` builds it offline from the lessons, the API reference covers the package,
and in headless Chromium every page loads with no console error, no failed request and no request leaving
localhost; equations are typeset, each lesson's figures and saved widgets show, and each lesson links to the
next. Screenshots go to book/_build/screenshots (MINIDET_SCREENSHOTS overrides)."""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import warnings as warnings_module
from pathlib import Path

import pytest

from book.browser import SCREENSHOTS, PageWatch, headless_chromium, serve
from book.build import build, lesson_paths
from book.vendor import VendorError

LESSONS = lesson_paths()
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PAGES = ["index", "architecture", "own_data", "results", "api", "api/minidet.losses.focal"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[str]]:
    """The HTML folder and the Sphinx warnings of a fresh build (in a temporary folder, so every warning is
    seen and a developer's book/_build/html is left alone)."""
    work = tmp_path_factory.mktemp("book")
    warnings = work / "warnings.txt"
    try:
        with warnings_module.catch_warnings():  # Sphinx 9 deprecation notices about its extensions' internals
            warnings_module.simplefilter("ignore", DeprecationWarning)
            warnings_module.simplefilter("ignore", PendingDeprecationWarning)
            html = build(strict=False, warning_file=warnings, work=work)
    except VendorError as exc:  # no npm, or the registry unreachable on a machine that never built the book
        pytest.skip(f"cannot fetch the book's page scripts: {exc}")
    return html, [w for w in warnings.read_text().splitlines() if "WARNING" in w or "ERROR" in w]


def _from_docstrings(warning: str) -> bool:
    return "docstring of" in warning or "/src/api/minidet" in warning


def test_book_pages_and_lessons_build_without_warnings(built):
    _, warnings = built
    own = [w for w in warnings if not _from_docstrings(w)]
    assert not own, "Sphinx warnings from the book's pages or the lessons:\n" + "\n".join(own)


def test_docstrings_render_without_warnings(built):
    _, warnings = built
    bad = [w for w in warnings if _from_docstrings(w)]
    assert not bad, "docstrings that do not render as written (reST/napoleon warnings):\n" + "\n".join(bad)


def test_book_pages_link_every_name_they_cite(built):
    """A {py:func}`...` on a book page that Sphinx could not resolve renders as code without a link."""
    html, _ = built
    for page in ("index", "architecture", "own_data", "results", "api"):
        text = (html / f"{page}.html").read_text(encoding="utf-8")
        unresolved = re.findall(r'(?<!">)<code class="xref py[^>]*>(.*?)</code>', text)
        assert not unresolved, f"{page}: {unresolved}"


def test_api_reference_has_every_module_and_exported_name(built):
    """Every module of minidet has a page, and every class or function a package exports (``__all__``) is
    documented on the page of the module that defines it."""
    html, _ = built
    import minidet

    names = ["minidet"] + [m.name for m in pkgutil.walk_packages(minidet.__path__, "minidet.")
                           if not any(part.startswith("_") for part in m.name.split("."))]
    assert {"minidet.losses.focal", "minidet.engine.evaluate"} <= set(names)
    missing = [f"{name}: no page api/{name}.html" for name in names if not (html / "api" / f"{name}.html").is_file()]
    for name in names:
        module = importlib.import_module(name)
        for export in getattr(module, "__all__", []) if hasattr(module, "__path__") else []:
            obj = getattr(module, export)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                page = html / "api" / f"{obj.__module__}.html"
                target = f"{obj.__module__}.{obj.__qualname__}"
                if not page.is_file() or f'id="{target}"' not in page.read_text(encoding="utf-8"):
                    missing.append(f"{name}.{export}: {target} is not documented on api/{page.name} (no docstring?)")
    assert not missing, "\n".join(missing)


def test_no_page_loads_anything_from_the_network(built):
    """Scripts, stylesheets, fonts and images of every page and stylesheet are local files."""
    html, _ = built
    remote = re.compile(r"""(?:<script[^>]*\ssrc|<img[^>]*\ssrc|<link[^>]*\shref)=["']((?:https?:)?//[^"']+)""")
    css_remote = re.compile(r"""url\(\s*["']?((?:https?:)?//[^)"']+)""")
    found = []
    for path in html.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(html)}: {u}" for u in remote.findall(text)
                  if not re.search(rf"""<link[^>]*rel=["'](?:canonical|alternate)["'][^>]*{re.escape(u)}""", text)]
    for path in html.rglob("*.css"):
        found += [f"{path.relative_to(html)}: {u}" for u in css_remote.findall(path.read_text(encoding="utf-8", errors="replace"))]
    assert not found, "\n".join(found)


def test_every_lesson_is_in_the_book(built):
    html, _ = built
    index = (html / "index.html").read_text(encoding="utf-8")
    for lesson in LESSONS:
        assert (html / "lessons" / f"{lesson.stem}.html").is_file(), lesson.name
        assert f'href="lessons/{lesson.stem}.html"' in index, f"{lesson.stem} is not in the index's lesson map / toc"


# --- in the browser ---------------------------------------------------------------------------------------

def test_without_chromium_or_apt_the_browser_tests_say_why(monkeypatch):
    import book.browser as helpers

    monkeypatch.setattr(helpers.shutil, "which", lambda name: None)
    path, why = helpers.ensure_chromium.__wrapped__()
    assert path is None and "apt-get" in why and "chromium" in why.lower()
    monkeypatch.setattr(helpers, "ensure_chromium", lambda: (None, why))
    with pytest.raises(helpers.BrowserUnavailable, match="apt-get"), helpers.headless_chromium():
        pass


@pytest.fixture(scope="module")
def browser():
    with headless_chromium(skip=pytest.skip) as b:
        yield b


@pytest.fixture(scope="module")
def site(built):
    with serve(built[0]) as url:
        yield url


def _open(browser, url: str, shot: str):
    """A page at ``url``, loaded, its widgets rendered and MathJax done (screenshot ``shot``.png); and its watcher."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = PageWatch().attach(page)
    page.goto(url, wait_until="load")
    page.wait_for_function(f"""() => [...document.querySelectorAll('script[type="{WIDGET_VIEW}"]')]
        .every(s => s.previousElementSibling && s.previousElementSibling.querySelector('.jupyter-widgets'))""", timeout=30_000)
    page.evaluate("() => window.MathJax ? MathJax.startup.promise.then(() => true) : false")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{shot}.png")
    return page, watch


def _typeset_equations(page) -> int:
    """The number of equations on the page, after checking MathJax typeset each one without a TeX error."""
    math = page.evaluate("""() => ({
        count: document.querySelectorAll('.math').length,
        untypeset: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
        errors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent)})""")
    assert not math["untypeset"] and not math["errors"], math
    return math["count"]


def _expected_outputs(nb: dict) -> tuple[int, int, bool]:
    """(image outputs shown as images, widget views, has math) of a notebook."""
    images = views = 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            views += WIDGET_VIEW in data
            images += WIDGET_VIEW not in data and "text/html" not in data and any(m in data for m in IMAGE_MIMES)
    has_math = any("$" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return images, views, has_math


@pytest.mark.browser
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem[:2] for p in LESSONS])
def test_lesson_page_in_chromium(browser, site, lesson):
    nb = json.loads(lesson.read_text(encoding="utf-8"))
    images, views, has_math = _expected_outputs(nb)
    page, watch = _open(browser, f"{site}/lessons/{lesson.stem}.html", lesson.stem)
    try:
        assert _typeset_equations(page) > 0 or not has_math, "the lesson's markdown has $...$ but the page has no equation"
        shown = page.evaluate("""() => [...document.querySelectorAll('.cell_output img')]
            .filter(i => !i.closest('.jupyter-widgets')).map(i => i.complete && i.naturalWidth > 0)""")
        assert len(shown) == images and all(shown), f"{images} figures in the notebook, page shows {shown}"
        rendered = page.evaluate(f"""() => document.querySelectorAll('script[type="{WIDGET_VIEW}"]').length""")
        assert rendered == views, f"{views} saved widget views in the notebook, {rendered} on the page"
        if views:
            widget = page.locator(".cell:has(.widget-slider)").first
            if widget.count():
                widget.scroll_into_view_if_needed()
                widget.screenshot(path=SCREENSHOTS / f"{lesson.stem}-widget.png")
                assert widget.locator(".jupyter-widgets img").evaluate_all(
                    "imgs => imgs.length > 0 && imgs.every(i => i.naturalWidth > 0)"), "the explorer's saved figure is missing"
        i = LESSONS.index(lesson)
        nxt = f"lessons/{LESSONS[i + 1].stem}.html" if i + 1 < len(LESSONS) else "results.html"
        links = page.evaluate("() => [...document.querySelectorAll('.minidet-next-lesson a, a.right-next')].map(a => a.href)")
        assert links and all(h.split("#")[0] == f"{site}/{nxt}" for h in links), (nxt, links)
        assert not watch.report(), watch.report()
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.parametrize("name", PAGES)
def test_front_matter_and_reference_in_chromium(browser, site, name):
    page, watch = _open(browser, f"{site}/{name}.html", name.replace("/", "_"))
    try:
        equations = _typeset_equations(page)
        if name == "api/minidet.losses.focal":
            assert equations >= 2, "the focal-loss docstring's equations are missing"
        if name == "index":
            lessons = page.evaluate("() => [...document.querySelectorAll('.minidet-lesson-map a')].map(a => a.href)")
            assert [h for h in lessons if "/lessons/" in h] == [f"{site}/lessons/{p.stem}.html" for p in LESSONS]
            assert page.evaluate("() => document.querySelector('a.right-next').href") == f"{site}/lessons/{LESSONS[0].stem}.html"
        assert not watch.report(), watch.report()
    finally:
        page.close()


def test_committed_lessons_stay_small():
    """Each lesson with its outputs at most 1.5 MB, all of them at most 12 MB (figures as JPEG at modest dpi)."""
    sizes = {p.name: p.stat().st_size for p in LESSONS}
    assert all(n <= 1_500_000 for n in sizes.values()), {k: v for k, v in sizes.items() if v > 1_500_000}
    assert sum(sizes.values()) <= 12_000_000, sizes


def test_every_cell_with_outputs_has_an_execution_count():
    """nbval refuses a code cell that has outputs but no execution count ("unrun reference cell")."""
    unrun = [(p.name, i) for p in LESSONS for i, c in enumerate(json.loads(p.read_text())["cells"])
             if c["cell_type"] == "code" and c.get("outputs") and c.get("execution_count") is None]
    assert not unrun, unrun
