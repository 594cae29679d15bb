"""What the browser tests share: finding (or installing) Debian's Chromium, a local file server, and a
watcher that records console errors, page errors, failed requests and any request that leaves localhost.

Playwright drives the system Chromium (``executable_path``); it never downloads a browser.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
SCREENSHOTS = Path(os.environ.get("MINIDET_SCREENSHOTS", Path(__file__).resolve().parent / "_build" / "screenshots"))


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)


@functools.cache  # the browser tests of several modules share one attempt
def ensure_chromium() -> tuple[str | None, str]:
    """``(path, "")`` to a Chromium binary, installing Debian's ``chromium`` with apt-get when it is missing
    and that is possible (root, or password-less sudo); else ``(None, why not)``."""
    path = find_chromium()
    if path:
        return path, ""
    apt = shutil.which("apt-get")
    if apt is None:
        return None, "Chromium is not installed and there is no apt-get to install it (Debian/Ubuntu: apt-get install chromium)"
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        return None, "Chromium is not installed and installing it needs root (run: sudo apt-get install -y chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for cmd in ([apt, "install", "-y", "-q", "chromium"], [apt, "update", "-q"], [apt, "install", "-y", "-q", "chromium"]):
        try:
            proc = subprocess.run(prefix + cmd, capture_output=True, text=True, env=env, timeout=900)
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(cmd)}` took longer than 15 minutes"
        log.append(f"$ {' '.join(cmd)} -> exit {proc.returncode}\n{proc.stderr.strip()[-500:]}")
        if find_chromium():
            return find_chromium(), ""
    return None, "Chromium is not installed and `apt-get install chromium` failed:\n" + "\n".join(log)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on ``http://127.0.0.1:<free port>`` in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def launch(playwright, executable: str):
    return playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, headless=True)


class BrowserUnavailable(RuntimeError):
    """No Playwright or no Chromium here; the message says why."""


@contextlib.contextmanager
def headless_chromium(skip: Callable[[str], Any] | None = None) -> Iterator:
    """A Playwright ``Browser`` on the system Chromium (installed first when possible). Without one, call
    ``skip(reason)`` (the tests pass ``pytest.skip``) or raise :class:`BrowserUnavailable`."""
    try:
        from playwright.sync_api import sync_playwright
        path, why = ensure_chromium()
    except ImportError:
        path, why = None, "playwright is not installed (pip install -e '.[book]')"
    if path is None:
        (skip or _raise)(f"no headless browser: {why}")
    with sync_playwright() as p:
        browser = launch(p, path)
        try:
            yield browser
        finally:
            browser.close()


def _raise(reason: str):
    raise BrowserUnavailable(reason)


@dataclass
class PageWatch:
    """Problems seen by a page: console errors, uncaught exceptions, failed or 4xx/5xx requests, and
    requests to anything but the local server (aborted, so a page that needs the network fails)."""

    problems: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    ignore_console: tuple[str, ...] = ()

    def attach(self, page, allowed_host: str = "127.0.0.1") -> PageWatch:
        def route(r):
            host = urlsplit(r.request.url).hostname
            if r.request.url.startswith(("data:", "blob:", "about:")) or host in (allowed_host, "localhost"):
                r.continue_()
            else:
                self.external.append(r.request.url)
                r.abort()

        def console(msg):
            if msg.type == "error" and not any(s in msg.text for s in self.ignore_console):
                self.problems.append(f"console error: {msg.text} ({msg.location.get('url', '')})")

        page.route("**/*", route)
        page.on("console", console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc} {getattr(exc, 'stack', '')[:600]}"))
        page.on("requestfailed", lambda req: req.url in self.external or self.problems.append(
            f"request failed: {req.url} ({req.failure})"))
        page.on("response", lambda resp: resp.status >= 400 and self.problems.append(
            f"HTTP {resp.status}: {resp.url}"))
        return self

    def report(self) -> str:
        return "\n".join(self.problems + [f"request leaving localhost: {u}" for u in self.external])
