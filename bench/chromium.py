"""The Chromium baseline: two Chromium browsers calling each other through the same relay.

Debian's ``chromium`` runs headless, driven by Playwright (no browser download). Each side is its own browser
(its own process tree, so CPU and RSS are per side like the kiosk's). The page (``bench/web/peer.html``, served
on http://127.0.0.1) is a small client of docs/protocol.md: hello, call/answer, complete-SDP offer/answer in
``signal`` (no trickle, like our terminals), hangup. It sends the same synthetic frames as the kiosk's synthetic
cameras — frames rendered by :class:`kiosk.video.synthetic.SyntheticScene` and the A4 form of
:func:`kiosk.video.synthetic.render_document_page`, drawn into canvases at the same size and rate with the same
frame stamp — so set-up and glass-to-glass are measured the same way on both stacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import socketserver
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import ProcSampler, process_tree
from bench.relay_rig import ServerProcess, token_of, write_config

WEB = Path(__file__).resolve().parent / "web"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]


def render_assets(folder: Path, camera: tuple[int, int], frames: int, document: tuple[int, int]) -> None:
    """The synthetic camera's frames (JPEG, high quality) and the document page (PNG) for the page to draw."""
    from PIL import Image

    from kiosk.video.synthetic import SyntheticScene, render_document_page

    (folder / "camera").mkdir(exist_ok=True)
    scene = SyntheticScene(*camera)
    for i in range(frames):
        Image.fromarray(scene.render()).save(folder / "camera" / f"{i}.jpg", quality=92)
    Image.fromarray(render_document_page(*document)).save(folder / "document.png")


@contextlib.contextmanager
def serve_page(assets: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1:0 for peer.html and the assets; yields its base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            path = path.split("?", 1)[0]
            if path.endswith(".html"):
                return str(WEB / Path(path).name)
            return str(assets / path.lstrip("/"))

        def log_message(self, *args: Any) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _chromium_roots(pid: int) -> set[int]:
    """Browser (root) processes of Chromium below ``pid``."""
    import os

    roots = set()
    tree = set(process_tree(pid))
    for p in tree:
        try:
            exe = os.readlink(f"/proc/{p}/exe")
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            parent_exe = os.readlink(f"/proc/{ppid}/exe")
        except OSError:
            continue
        if "chromium" in exe and "chromium" not in parent_exe:
            roots.add(p)
    return roots


class ChromiumPeers:
    """Two headless Chromium browsers (counter and office) on the bench page, against one relay."""

    def __init__(
        self,
        relay_url: str,
        base_url: str,
        counter_token: str,
        office_token: str,
        camera: tuple[int, int, float],
        document: tuple[int, int, float],
        codec: str = "vp8",
        camera_frames: int = 30,
        doc_hint: str = "text",
        doc_stamp: bool = True,
    ) -> None:
        self.relay_url, self.base_url = relay_url, base_url
        self.tokens = {"counter": counter_token, "office": office_token}
        self.camera, self.document, self.codec = camera, document, codec
        self.camera_frames, self.doc_hint, self.doc_stamp = camera_frames, doc_hint, doc_stamp
        self.pages: dict[str, Any] = {}
        self.browsers: dict[str, Any] = {}
        self.pids: dict[str, int] = {}

    async def __aenter__(self) -> ChromiumPeers:
        import os

        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        for role in ("office", "counter"):
            before = _chromium_roots(os.getpid())
            browser = await self._pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            after = _chromium_roots(os.getpid()) - before
            self.browsers[role] = browser
            if after:
                self.pids[role] = min(after)
            page = await browser.new_page()
            cw, ch, cf = self.camera
            dw, dh, df = self.document
            q = (
                f"role={role}&relay={self.relay_url}&token={self.tokens[role]}&camera={cw}x{ch}x{cf:g}"
                f"&document={dw}x{dh}x{df:g}&codec={self.codec}&camera_frames={self.camera_frames}"
                f"&doc_hint={self.doc_hint}&doc_stamp={1 if self.doc_stamp else 0}"
            )
            await page.goto(f"{self.base_url}/peer.html?{q}")
            await page.wait_for_function("window.results && window.results.welcome", timeout=30000)
            self.pages[role] = page
        return self

    async def __aexit__(self, *exc: object) -> None:
        for b in self.browsers.values():
            with contextlib.suppress(Exception):
                await b.close()
        await self._pw.stop()

    async def call(
        self, department: str, labels_office: tuple[str, ...] = ("camera", "document"), timeout: float = 20.0
    ) -> dict[str, Any]:
        """Place a call and wait until every video track has shown a frame on both sides."""
        c, o = self.pages["counter"], self.pages["office"]
        await o.evaluate("window.results.firstFrame = {}")
        await c.evaluate(f"window.startCall({department!r})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = await c.evaluate("window.results")
            ro = await o.evaluate("window.results")
            if "camera" in rc["firstFrame"] and all(lbl in ro["firstFrame"] for lbl in labels_office):
                return {"counter": rc, "office": ro}
            await asyncio.sleep(0.02)
        raise TimeoutError(
            f"Chromium call: no media within {timeout} s: counter {rc.get('log')}, office {ro.get('log')}"
        )

    async def hangup(self) -> None:
        c, o = self.pages["counter"], self.pages["office"]
        ended = await o.evaluate("window.results.ended")
        await c.evaluate("window.hangup()")
        deadline = time.monotonic() + 10
        while await o.evaluate("window.results.ended") == ended and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


async def _run_media(
    calls: int,
    hold: float,
    log: Any,
    camera: tuple[int, int, float] = (1280, 720, 30.0),
    document: tuple[int, int, float] = (1920, 1080, 5.0),
    codec: str = "vp8",
) -> dict[str, Any]:
    out: dict[str, Any] = {"setup_ms": {}, "g2g_ms": {}, "frames": {}, "cpu": {}, "rss_mb": {}}
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as tmp:
        folder = Path(tmp)
        render_assets(folder, camera[:2], 30, document[:2])
        cfg = write_config(folder, 0, 1)
        counter_id, station_id, dept = cfg.pairs[0]
        server = ServerProcess("relay", cfg.path, folder / "relay.log").start()
        try:
            with serve_page(folder) as base:
                async with ChromiumPeers(
                    server.url, base, token_of(counter_id), token_of(station_id), camera, document, codec
                ) as peers:
                    for i in range(calls):
                        r = await peers.call(dept)
                        ans = r["office"]["answerAt"]
                        t_answer = max(ans.values())
                        out["setup_ms"].setdefault("at counter: camera from station", []).append(
                            r["counter"]["firstFrame"]["camera"] - t_answer
                        )
                        for lbl in ("camera", "document"):
                            out["setup_ms"].setdefault(f"at station: {lbl} from counter", []).append(
                                r["office"]["firstFrame"][lbl] - t_answer
                            )
                        last = i == calls - 1
                        if last:
                            # The long call: glass-to-glass and CPU/RSS per side while it runs.
                            for side in ("counter", "office"):
                                await peers.pages[side].evaluate("window.takeG2G()")
                            samplers = {
                                side: ProcSampler(pid, tree=True).start() for side, pid in peers.pids.items()
                            }
                            await asyncio.sleep(hold)
                            for side, s in samplers.items():
                                s.stop()
                                key = "station" if side == "office" else "counter"
                                out["cpu"][key] = s.cpu_percent
                                out["rss_mb"][key] = s.rss_median_mb
                            for side, where in (("counter", "at counter"), ("office", "at station")):
                                g = await peers.pages[side].evaluate("window.takeG2G()")
                                for lbl, samples in g["g2g"].items():
                                    out["g2g_ms"][f"{where}: {lbl}"] = samples
                                    out["frames"][f"{where}: {lbl}"] = {
                                        "frames": g["frames"][lbl],
                                        "unreadable": g["unreadable"][lbl],
                                        "size": g["size"].get(lbl),
                                    }
                        else:
                            await asyncio.sleep(1.0)
                        await peers.hangup()
                        await asyncio.sleep(0.5)
        finally:
            server.stop()
    return out


def run_media(calls: int = 20, hold: float = 30.0, log: Any = print, **kw: Any) -> dict[str, Any]:
    log(f"chromium baseline: {calls} calls, the last held {hold:.0f} s")
    t0 = time.monotonic()
    out = asyncio.run(_run_media(calls, hold, log, **kw))
    log(f"chromium baseline done in {time.monotonic() - t0:.0f} s: cpu {out['cpu']}")
    return out


def png_to_rgb(data_url: str) -> Any:
    """Decode a ``data:image/png;base64,...`` URL (from the page's ``grab``) into an RGB array."""
    import base64

    import numpy as np
    from PIL import Image

    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))


if __name__ == "__main__":
    import json
    import sys

    res = run_media(calls=int(sys.argv[1]) if len(sys.argv) > 1 else 3, hold=5.0)
    from bench.common import Stats

    print(json.dumps({k: Stats.of(v, 95).__dict__ for k, v in res["setup_ms"].items()}, indent=1))
    print(json.dumps({k: Stats.of(v, 95).__dict__ for k, v in res["g2g_ms"].items()}, indent=1))
    print(res["frames"], res["cpu"], res["rss_mb"])
