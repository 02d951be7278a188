"""Render a local HTML file in headless Chromium: a screenshot, the console errors, and the size
of every image, so a test (or a user) can check a report the way a person would look at it.

Talks to Chromium over its DevTools protocol through a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so nothing beyond the standard
library and the ``chromium`` binary is needed, and no network port is opened.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.utils.errors import PolymodalError

BINARIES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  id: i.id, alt: i.alt, complete: i.complete,
  naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})))"""


LOCAL_SCHEMES = ("data:", "file:", "about:", "chrome:", "devtools:")


class BrowserError(PolymodalError, RuntimeError):
    """Chromium is missing, failed to start, or did not answer in time."""


@dataclass
class PageCheck:
    """What a rendered page showed: console errors / uncaught exceptions / failed loads, one
    entry per ``<img>`` with its natural size (0 when it failed to decode), and the URLs it
    requested beyond itself (anything but ``data:``, ``file:`` and ``about:``)."""

    console_errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    height: int = 0


def find_chromium() -> str | None:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """A DevTools session over the two pipes; events are kept until read."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe (exit code {self.proc.poll()})")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self, method: str, session: str | None = None, timeout: float = 60.0, **params: Any
    ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while True:
            event = self._message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and error log entries (e.g. failed resource loads)."""
    out = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif e.get("method") == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            out.append(str(details.get("exception", {}).get("description", details.get("text"))))
        elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
    return out


def _requests(events: list[dict[str, Any]]) -> list[str]:
    urls = [
        str(e["params"]["request"]["url"])
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    return [u for u in urls if not u.startswith(LOCAL_SCHEMES)]


def _spawn(binary: str, profile: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """Chromium reads commands on fd 3 and writes replies on fd 4."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()

    def wire() -> None:  # runs in the child before exec: move the ends to fds 3 and 4
        high_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)  # >= 10: never clobbered below
        high_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.dup2(high_r, 3)  # dup2 leaves the copies inheritable
        os.dup2(high_w, 4)

    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=wire,
        close_fds=False,  # would close fds 3 and 4 after ``wire``; Python's own fds are CLOEXEC
        start_new_session=True,  # its own process group, so it can be ended as a whole
    )
    os.close(to_child_r)
    os.close(from_child_w)
    return proc, to_child_w, from_child_r


def render(
    html: str | Path,
    screenshot: str | Path | None = None,
    width: int = 1280,
    full_page: bool = True,
    timeout: float = 90.0,
) -> PageCheck:
    """Load ``html`` (a local file) in headless Chromium, wait for the load event, and return a
    :class:`PageCheck`; with ``screenshot``, also write a PNG of the page (its full height when
    ``full_page``)."""
    binary = find_chromium()
    if binary is None:
        raise BrowserError(f"no Chromium found (looked for {', '.join(BINARIES)})")
    url = Path(html).resolve().as_uri()
    with tempfile.TemporaryDirectory(
        prefix="polymodal-chromium-", ignore_cleanup_errors=True
    ) as profile:
        proc, write_fd, read_fd = _spawn(binary, profile)
        pipe = _Pipe(proc, write_fd, read_fd)
        try:
            return _drive(pipe, url, screenshot, width, full_page, timeout)
        finally:
            _close(pipe)


def _close(pipe: _Pipe) -> None:
    """Ask Chromium to quit, then make sure its whole process group is gone."""
    with contextlib.suppress(BrowserError, OSError, ValueError):
        pipe.call("Browser.close", timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        pipe.proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pipe.proc.pid, signal.SIGKILL)  # helpers (renderer, GPU) of this run only
    pipe.proc.wait()
    os.close(pipe.write_fd)
    os.close(pipe.read_fd)


def _drive(
    pipe: _Pipe,
    url: str,
    screenshot: str | Path | None,
    width: int,
    full_page: bool,
    timeout: float,
) -> PageCheck:
    target = pipe.call("Target.createTarget", url="about:blank", timeout=timeout)["targetId"]
    session = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        pipe.call(f"{domain}.enable", session)
    pipe.call(
        "Emulation.setDeviceMetricsOverride",
        session,
        width=width,
        height=900,
        deviceScaleFactor=1,
        mobile=False,
    )
    pipe.events.clear()
    nav = pipe.call("Page.navigate", session, url=url)
    if nav.get("errorText"):
        raise BrowserError(f"chromium could not open {url}: {nav['errorText']}")
    pipe.wait_for("Page.loadEventFired", timeout)
    value = pipe.call("Runtime.evaluate", session, expression=IMAGES_JS, returnByValue=True)
    images = json.loads(value["result"]["value"])
    height_js = "document.documentElement.scrollHeight"
    height = int(pipe.call("Runtime.evaluate", session, expression=height_js)["result"]["value"])
    if screenshot is not None:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        shot = pipe.call("Page.captureScreenshot", session, timeout=timeout, **params)
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
    return PageCheck(_errors(pipe.events), images, _requests(pipe.events), height)
