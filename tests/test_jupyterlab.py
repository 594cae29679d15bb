"""JupyterLab itself, in headless Chromium: start `jupyter lab` on localhost (no token, a temporary root)
once, and for each of the three mission explorers (progressive focal loss in lesson 04, the dual-weight maps
in lesson 05, IoU-balanced sampling in lesson 06) open its lesson, run all its cells from the Run menu
(MINIDET_FAST=1), check no cell failed, drag one of the explorer's sliders and check that the figure is
redrawn in place and that its pixels changed (screenshots of the output area before and after). Screenshots
and the time each lesson took go to book/_build/screenshots (MINIDET_SCREENSHOTS overrides)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import io

import nbformat
import numpy as np
import pytest
from PIL import Image

from book.browser import SCREENSHOTS, PageWatch, headless_chromium
from book.build import lesson_paths

RUN_TIMEOUT_S = 600
# (lesson file prefix, the explorer's call, the label of the slider to drag)
EXPLORERS = [("04_", "pfl_explorer(", "gamma"), ("05_", "dw_map_explorer(", "gamma_2"), ("06_", "sampler_explorer(", "K (bins)")]
MIN_CHANGED = 0.002  # fraction of the output area's pixels that must change when the figure is redrawn


def _lesson(prefix: str) -> Path | None:
    return next((p for p in lesson_paths() if p.name.startswith(prefix)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings: Path) -> None:
    """Every cell in the DOM (no windowing), and no news fetched from the internet."""
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``(base URL, root folder)`` of a running `jupyter lab` whose ``lessons/`` holds the explorers' lessons
    with their outputs cleared (fast mode writes its data and runs next to them, under the root)."""
    tmp_path = tmp_path_factory.mktemp("lab")
    root, home = tmp_path / "root", tmp_path / "jupyter"
    (root / "lessons").mkdir(parents=True)
    for prefix, _, _ in EXPLORERS:
        lesson = _lesson(prefix)
        if lesson is None:
            continue
        nb = nbformat.read(lesson, as_version=4)
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, root / "lessons" / lesson.name)
    _write_settings(home / "settings")
    port = _free_port()
    env = {**os.environ, "MINIDET_FAST": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
           f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True",  # the test starts the kernel with a plain REST call
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"] + ["--allow-root"] * (os.geteuid() == 0)
    log = (tmp_path / "jupyter-lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{(tmp_path / 'jupyter-lab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer in 120 s:\n{(tmp_path / 'jupyter-lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, root
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (the server and the kernels it started), SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def chromium():
    with headless_chromium(skip=pytest.skip) as b:
        yield b


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{item}$")).click()


def _start_kernel(url: str, notebook: str) -> str:
    """Start the notebook's kernel through JupyterLab's REST API; the page then attaches to this session
    (left to itself, JupyterLab may open the notebook with "No Kernel" under load). Returns the session id."""
    body = json.dumps({"path": notebook, "type": "notebook", "name": "", "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(f"{url}/api/sessions", data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 201, r.status
        return json.loads(r.read())["id"]


def _stop_kernel(url: str, session: str) -> None:
    """Shut the lesson's session (and its kernel) down, so the next lesson's kernel has the memory."""
    req = urllib.request.Request(f"{url}/api/sessions/{session}", method="DELETE")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 204, r.status


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def changed_fraction(before: bytes, after: bytes) -> float:
    """Fraction of pixels that differ between two screenshots (PNG bytes); 1 when their sizes differ."""
    a, b = _pixels(before), _pixels(after)
    if a.shape != b.shape:
        return 1.0
    return float((np.abs(a - b).max(-1) > 8).mean())  # a small tolerance for anti-aliasing noise


def test_changed_fraction():
    def png(array):
        buf = io.BytesIO()
        Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    a = np.zeros((10, 20, 3))
    b = a.copy()
    b[:2, :10] = 255  # 20 of 200 pixels
    assert changed_fraction(png(a), png(a)) == 0.0
    assert changed_fraction(png(a), png(b)) == pytest.approx(0.1)
    assert changed_fraction(png(a), png(a[:5])) == 1.0


def _prompts(page) -> list[str]:
    return page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("prefix,call,slider_label", EXPLORERS, ids=[e[1].rstrip("(") for e in EXPLORERS])
def test_lesson_runs_in_jupyterlab_and_its_explorer_redraws(lab, chromium, prefix, call, slider_label):
    url, root = lab
    lesson = _lesson(prefix)
    if lesson is None:
        pytest.skip(f"no lesson {prefix}*.ipynb")
    notebook, stem = f"lessons/{lesson.name}", lesson.name[:2]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    started_at = time.monotonic()
    session = _start_kernel(url, notebook)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    watch = PageWatch(ignore_console=("favicon",)).attach(page)
    # A workspace of its own, reset: otherwise JupyterLab reopens the previous lesson's tab next to this one.
    page.goto(f"{url}/lab/workspaces/lesson{stem}/tree/{notebook}?reset", wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(timeout=120_000)
    page.locator(".jp-Toolbar-kernelName", has_text="Python").first.wait_for(timeout=120_000)  # attached to it
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first.wait_for(timeout=120_000)
    _menu(page, "Run", "Run All Cells")
    started = time.monotonic()
    while _prompts(page) and all(p == "[ ]:" for p in _prompts(page)):  # a click before the kernel listens is lost
        if time.monotonic() - started > 30:
            _menu(page, "Run", "Run All Cells")
            started = time.monotonic()
        page.wait_for_timeout(500)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:  # done when no cell waits ([*]) and the kernel is idle, or a cell failed (run-all stops there)
        prompts = _prompts(page)
        idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').count() > 0
        if idle and prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            break
        if idle and page.locator(".jp-OutputArea-output", has_text="Traceback").count():
            break
        assert time.monotonic() < deadline, f"cells still running after {RUN_TIMEOUT_S} s: {prompts}"
        page.wait_for_timeout(1000)
    run_all_s = time.monotonic() - started_at
    page.screenshot(path=SCREENSHOTS / f"jupyterlab-{stem}-after-run-all.png")
    failed = page.locator(".jp-OutputArea-output", has_text="Traceback")
    assert failed.count() == 0, "a cell shows an error in JupyterLab:\n" + "\n".join(failed.all_inner_texts())[:3000]

    _menu(page, "File", "Save Notebook")  # the saved file is the second, independent record of the run
    deadline = time.monotonic() + 60
    while True:
        saved = nbformat.read(root / notebook, as_version=4)
        code = [c for c in saved.cells if c.cell_type == "code"]
        if all(c.execution_count for c in code):
            break
        if time.monotonic() > deadline:
            page.screenshot(path=SCREENSHOTS / f"jupyterlab-{stem}-save-failed.png")
            pytest.fail("JupyterLab did not save the executed notebook; dialogs: "
                        f"{page.locator('.jp-Dialog').all_inner_texts()}")
        page.wait_for_timeout(1000)  # not time.sleep: Playwright handles the page (and its routed save request) only while called
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(saved.cells) for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors, errors

    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".cm-content", has_text=call)).first
    cell.scroll_into_view_if_needed()
    slider = cell.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(slider_label)}$"))).first
    output = cell.locator(".widget-output").first
    figure = output.locator("img").first
    figure.wait_for(timeout=60_000)
    output.scroll_into_view_if_needed()
    before_src, before_value = figure.get_attribute("src"), slider.locator(".widget-readout").inner_text()
    before_png = output.screenshot(path=SCREENSHOTS / f"jupyterlab-{stem}-explorer-before.png")

    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").first.bounding_box()
    track = slider.locator(".noUi-target").first.bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(min(x + track["width"] / 3, track["x"] + track["width"] - 2), y, steps=8)
    page.mouse.up()
    moved_at = time.monotonic()

    deadline = time.monotonic() + 60
    while output.locator("img").first.get_attribute("src") == before_src:
        assert time.monotonic() < deadline, "the explorer's figure was not redrawn after moving the slider"
        page.wait_for_timeout(100)
    redraw_s = time.monotonic() - moved_at
    after_value = slider.locator(".widget-readout").inner_text()
    output.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # let the new image decode before the screenshot
    after_png = output.screenshot(path=SCREENSHOTS / f"jupyterlab-{stem}-explorer-after.png")
    changed = changed_fraction(before_png, after_png)
    timings = SCREENSHOTS / "jupyterlab-timings.json"
    record = json.loads(timings.read_text()) if timings.exists() else {}
    record[lesson.name] = {"run_all_s": round(run_all_s, 1), "redraw_s": round(redraw_s, 2), "changed_pixels": round(changed, 4),
                           "slider": slider_label, "values": [before_value, after_value]}
    timings.write_text(json.dumps(record, indent=1))
    print(f"{lesson.name}: run all {run_all_s:.0f} s, redraw seen {redraw_s:.2f} s after the drag, {changed:.1%} of pixels changed")
    assert after_value != before_value, (before_value, after_value)
    assert output.locator(".jp-OutputArea-output", has_text="Traceback").count() == 0
    assert output.locator("img").count() == 1  # redrawn in place, not appended
    assert changed > MIN_CHANGED, f"the redrawn figure looks the same: {changed:.2%} of its pixels changed"
    assert not [p for p in watch.problems if "console error" not in p], watch.report()
    assert not watch.external, watch.external
    page.close()
    _stop_kernel(url, session)
