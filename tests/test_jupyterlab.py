"""JupyterLab itself, in headless Chromium: start `jupyter lab` on localhost (no token, a temporary root),
open the first lesson with a slider explorer, run all its cells from the Run menu (MINIDET_FAST=1), check no
cell failed, drag a slider and check that the explorer's figure is redrawn. Screenshots go to
book/_build/screenshots (MINIDET_SCREENSHOTS overrides)."""
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

import nbformat
import pytest

from book.browser import SCREENSHOTS, PageWatch, headless_chromium
from book.build import lesson_paths

EXPLORER_CALL = re.compile(r"\b\w+_explorer\(")
RUN_TIMEOUT_S = 600


def _explorer_lesson() -> Path | None:
    for path in lesson_paths():
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and EXPLORER_CALL.search(c.source) for c in nb.cells):
            return path
    return None


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


@pytest.fixture
def lab(tmp_path):
    """``(base URL, root folder, notebook path relative to root)`` of a running `jupyter lab`."""
    lesson = _explorer_lesson()
    if lesson is None:
        pytest.skip("no lesson calls a *_explorer(...) widget")
    root, home = tmp_path / "root", tmp_path / "jupyter"
    (root / "lessons").mkdir(parents=True)
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
        yield url, root, f"lessons/{lesson.name}"
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


@pytest.fixture
def chromium():
    with headless_chromium(skip=pytest.skip) as b:
        yield b


def _menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{item}$")).click()


def _start_kernel(url: str, notebook: str) -> None:
    """Start the notebook's kernel through JupyterLab's REST API; the page then attaches to this session
    (left to itself, JupyterLab may open the notebook with "No Kernel" under load)."""
    body = json.dumps({"path": notebook, "type": "notebook", "name": "", "kernel": {"name": "python3"}}).encode()
    req = urllib.request.Request(f"{url}/api/sessions", data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 201, r.status


def _prompts(page) -> list[str]:
    return page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()


@pytest.mark.browser
@pytest.mark.slow
def test_lesson_runs_in_jupyterlab_and_its_explorer_redraws(lab, chromium):
    url, root, notebook = lab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _start_kernel(url, notebook)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    watch = PageWatch(ignore_console=("favicon",)).attach(page)
    page.goto(f"{url}/lab/tree/{notebook}", wait_until="domcontentloaded")
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
    page.screenshot(path=SCREENSHOTS / "jupyterlab-after-run-all.png")
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
            page.screenshot(path=SCREENSHOTS / "jupyterlab-save-failed.png")
            pytest.fail("JupyterLab did not save the executed notebook; dialogs: "
                        f"{page.locator('.jp-Dialog').all_inner_texts()}")
        page.wait_for_timeout(1000)  # not time.sleep: Playwright handles the page (and its routed save request) only while called
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(saved.cells) for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors, errors

    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".cm-content", has_text=EXPLORER_CALL)).first
    cell.scroll_into_view_if_needed()
    slider = cell.locator(".widget-slider").first
    figure = cell.locator(".widget-output img").first
    figure.wait_for(timeout=60_000)
    before_src, before_value = figure.get_attribute("src"), slider.locator(".widget-readout").inner_text()
    cell.screenshot(path=SCREENSHOTS / "jupyterlab-explorer-before.png")

    handle = slider.locator(".noUi-handle").first.bounding_box()
    track = slider.locator(".noUi-target").first.bounding_box()
    x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(min(x + track["width"] / 3, track["x"] + track["width"] - 2), y, steps=8)
    page.mouse.up()

    deadline = time.monotonic() + 60
    while cell.locator(".widget-output img").first.get_attribute("src") == before_src:
        assert time.monotonic() < deadline, "the explorer's figure was not redrawn after moving the slider"
        page.wait_for_timeout(500)
    after_value = slider.locator(".widget-readout").inner_text()
    cell.screenshot(path=SCREENSHOTS / "jupyterlab-explorer-after.png")
    assert after_value != before_value, (before_value, after_value)
    assert cell.locator(".widget-output", has_text="Traceback").count() == 0
    assert cell.locator(".widget-output img").count() == 1  # redrawn in place, not appended
    assert not [p for p in watch.problems if "console error" not in p], watch.report()
    assert not watch.external, watch.external
    page.close()
