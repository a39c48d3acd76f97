"""The report in a real browser: headless Chromium opens it offline, runs it without a JavaScript error, and every
figure draws. Chromium is driven through its DevTools protocol over ``--remote-debugging-pipe`` (NUL-terminated JSON
on file descriptors 3 and 4), so no websocket library and no network port is needed.

Skipped when no Chromium is installed, except under CI=true, where the test must run (``.ci/run`` installs Debian's
``chromium``). Set CHROMIUM=/path/to/binary to use another build; set MOPRUNE_SCREENSHOT=path.png to keep the
screenshot somewhere other than the test's temporary directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from moprune.report.html import sections, write_dashboard
from moprune.report.data import report_data

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars",
                  "--enable-unsafe-swiftshader")  # software WebGL for the 3-D view and parallel coordinates

# Runs in the page after load: waits two frames and a moment (plotly finishes some drawing asynchronously), then
# reports each figure: its traces, the marks it drew (SVG points, bars, heat-map images, WebGL canvases).
PROBE = """
(async () => {
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  await new Promise(r => setTimeout(r, 1000));
  return Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => ({
    id: el.id,
    traces: (el.data || []).length,
    laidOut: !!el._fullLayout,
    svgMarks: el.querySelectorAll('path.point, .heatmaplayer image, .hm image, g.trace.bars path').length,
    glCanvases: el.querySelectorAll('canvas').length,
    noWebgl: (el.innerText || '').includes('WebGL is not supported'),
    height: el.getBoundingClientRect().height,
  }));
})()
"""


def find_chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe; events are kept in ``events``."""

    def __init__(self, binary: str, profile: Path):
        to_child_r, self._out = os.pipe()
        self._in, from_child_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4: our ends go above 10 and bash moves them there
        # (bash, not sh: dash redirects one-digit descriptors only).
        r, w = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        for fd in (to_child_r, from_child_w):
            os.close(fd)
        script = f'exec "$0" "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(r, w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(r)
        os.close(w)
        self._buffer, self._next_id, self.events = b"", 0, []
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._in, selectors.EVENT_READ)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(timeout=left):
                raise TimeoutError("no reply from Chromium's DevTools pipe")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.poll() is not None else ""
                raise RuntimeError(f"Chromium closed its DevTools pipe (exit {self.proc.poll()}): {err}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        for event in self.events[:seen]:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._in, self._out):
            os.close(fd)
        self.proc.stderr.close()


def page_errors(events: list[dict]) -> list[str]:
    """Uncaught exceptions, console.error calls and error log entries (failed loads among them)."""
    errors = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
    return errors


def render(binary: str, html: Path, screenshot: Path, profile: Path, *, width: int = 1400) -> dict:
    """Open ``html`` in headless Chromium; return the figures' probe, page errors and requested URLs; save a PNG."""
    dt = DevTools(binary, profile)
    try:
        target = dt.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = dt.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.call(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False}
        dt.call("Emulation.setDeviceMetricsOverride", metrics, session)
        dt.call("Page.navigate", {"url": html.resolve().as_uri()}, session)
        dt.wait_event("Page.loadEventFired", timeout=120)
        probe = dt.call("Runtime.evaluate", {"expression": PROBE, "awaitPromise": True, "returnByValue": True},
                        session, timeout=60)
        figures = probe["result"]["value"]
        height = dt.call("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
        dt.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(int(height) + 20, 16000)}, session)
        time.sleep(1.5)  # plotly's responsive relayout after the resize
        shot = dt.call("Page.captureScreenshot", {"format": "png"}, session, timeout=120)
        screenshot.write_bytes(__import__("base64").b64decode(shot["data"]))
        requests = [e["params"]["request"]["url"] for e in dt.events if e.get("method") == "Network.requestWillBeSent"]
        return {"figures": figures, "errors": page_errors(dt.events), "requests": requests}
    finally:
        dt.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        message = ("no Chromium binary found (looked for " + ", ".join(CHROMIUM_NAMES) + " on PATH and $CHROMIUM); "
                   "install Debian's `chromium` to run the browser test")
        if os.environ.get("CI") == "true":
            pytest.fail(message + " -- CI=true requires it (.ci/run installs it)")
        pytest.skip(message)
    return binary


@pytest.mark.slow  # starts Chromium and renders 5 MB of plotly (about 20 s)
def test_report_renders_in_chromium_without_errors_and_every_figure_draws(chromium, enriched_study, tmp_path):
    spec, study = enriched_study
    html = write_dashboard(study, spec, tmp_path / "report" / "index.html")
    data = report_data(study, spec)
    expected = [f"fig-{s.id}" for s in sections(data) if s.figure is not None]
    required = {"fig-front", "fig-front3d", "fig-history", "fig-parallel", "fig-sensitivity"}
    assert required | ({"fig-ratios"} if not data.front.empty else set()) <= set(expected)

    screenshot = Path(os.environ.get("MOPRUNE_SCREENSHOT") or tmp_path / "dashboard.png")
    result = render(chromium, html, screenshot, tmp_path / "profile")
    print(f"screenshot: {screenshot}")

    assert result["errors"] == []
    external = [u for u in result["requests"] if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert external == [], "the report must open without a network"
    figures = {f["id"]: f for f in result["figures"]}
    assert sorted(figures) == sorted(expected)
    for fid, f in figures.items():
        assert f["traces"] > 0 and f["laidOut"] and f["height"] > 200, f
        assert f["svgMarks"] > 0 or f["glCanvases"] > 0, f"{fid} drew nothing: {f}"
        assert not f["noWebgl"], f"{fid}: WebGL unavailable"
    assert screenshot.stat().st_size > 50_000  # a page of figures, not a blank one
