"""The fleet page's test rig: a relay with the page on, a seeded call log, terminals, and Chromium via Playwright."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from helpers import ROOT, make_relay_config

from relay_server.admin.settings import AdminAccount, FleetSettings, hash_password
from relay_server.core import CallRecord
from relay_server.server import RelayServer
from relay_server.store import CallLog

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
]
USER, PASSWORD = "tech", "fleet-test-password"
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
TZ = ZoneInfo("Asia/Tokyo")
_HASHES: dict[str, str] = {}


def password_hash(password: str) -> str:
    """scrypt at the smallest accepted cost, once per password for the whole run."""
    if password not in _HASHES:
        _HASHES[password] = hash_password(password, n=1 << 14)
    return _HASHES[password]


def previous_month(now: float) -> str:
    first = datetime.fromtimestamp(now, TZ).replace(day=1)
    return (first - timedelta(days=1)).strftime("%Y-%m")


def seed_calls(path: Path, now: float, departments: list[str], seed: int = 17) -> list[CallRecord]:
    """Write about 40 days of plausible calls (mornings busier, a few missed) into the call log at ``path``."""
    rng = random.Random(seed)
    weight = {d: w for d, w in zip(departments, (6, 4, 3, 1), strict=False)}
    records = []
    day0 = datetime.fromtimestamp(now, TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=40
    )
    for day in range(41):
        date = day0 + timedelta(days=day)
        if date.weekday() >= 5:
            continue
        for dept in departments:
            for n in range(rng.randint(0, weight.get(dept, 1) + 2)):
                start = (date + timedelta(hours=8.75 + rng.random() * 8.5)).timestamp()
                if start > now - 600:
                    continue
                wait = rng.lognormvariate(2.3, 0.6)
                if rng.random() < 0.12:
                    outcome, reason, answered = rng.choice(("unanswered", "cancelled")), "unanswered", None
                    ended = start + min(wait * 3, 60)
                else:
                    outcome, reason, answered = "answered", "hangup", start + wait
                    ended = answered + rng.uniform(120, 900)
                records.append(
                    CallRecord(
                        f"seed{day}-{dept}-{n}",
                        dept,
                        "counter-sapporo-1",
                        start,
                        ended,
                        outcome,
                        reason,
                        answered,
                        "office-tobetsu-1" if answered else None,
                        2 if answered else 1,
                    )
                )
    with CallLog(path) as log:
        for r in records:
            log.record(r)
    return records


def fleet_config(tmp_path: Path, **overrides: Any) -> Any:
    admins = (
        AdminAccount(USER, password_hash(PASSWORD)),
        AdminAccount(DEMO_USER, password_hash(DEMO_PASSWORD), True),
    )
    settings = FleetSettings(enabled=True, port=0, admins=admins, **overrides)
    return replace(make_relay_config(database=str(tmp_path / "relay.sqlite3")), fleet=settings)


@dataclass
class Rig:
    relay: RelayServer
    records: list[CallRecord] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.relay.fleet.url)


@asynccontextmanager
async def fleet_relay(tmp_path: Path, seed: bool = True, **overrides: Any) -> AsyncIterator[Rig]:
    cfg = fleet_config(tmp_path, **overrides)
    records = (
        seed_calls(tmp_path / "relay.sqlite3", datetime.now(TZ).timestamp(), list(cfg.departments))
        if seed
        else []
    )
    relay = await RelayServer(cfg).start(host="127.0.0.1", port=0)
    try:
        yield Rig(relay, records)
    finally:
        await relay.close()


@asynccontextmanager
async def chromium(locale: str = "en-US") -> AsyncIterator[Any]:
    """A fresh Chromium context (no cookies) with a 1400×1000 window."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                locale=locale, viewport={"width": 1400, "height": 1000}, accept_downloads=True
            )
            yield context
        finally:
            await browser.close()


async def log_in(page: Any, url: str, user: str = USER, password: str = PASSWORD) -> None:
    await page.goto(url + "login")
    await page.fill("#user", user)
    await page.fill("#password", password)
    await page.click("#login")


@asynccontextmanager
async def lamp_agent(relay_url: str) -> AsyncIterator[Any]:
    """The real lamp agent (``run_agent``, health reports included) on an emulated LCUS board."""
    from kiosk.config import load_terminal_config
    from kiosk.devices.emulated import EmulatedLcusBoard
    from kiosk.lamp_agent import run_agent

    cfg = load_terminal_config(ROOT / "config" / "lamp.toml", "lamp")
    assert cfg.lamp is not None
    with EmulatedLcusBoard(4) as board:
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            run_agent(replace(cfg.relay, url=relay_url), replace(cfg.lamp, port=board.url), stop=stop)
        )
        try:
            yield board
        finally:
            stop.set()
            with suppress(Exception):
                await asyncio.wait_for(task, 10)
            for sig in (signal.SIGTERM, signal.SIGINT):
                with suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(sig)


def small_terminal(name: str, role: str, *, document: str | None = None) -> Any:
    """A demo terminal config with small synthetic pictures (and the document camera replaced when given)."""
    from kiosk.config import load_terminal_config

    cfg = load_terminal_config(ROOT / "config" / name, role)
    media = cfg.media
    assert media is not None
    camera = replace(media.camera, width=320, height=180, fps=10) if media.camera else None
    doc = media.document_camera
    if doc is not None:
        doc = replace(doc, source=document or doc.source, width=640, height=360, fps=2)
    return replace(cfg, media=replace(media, camera=camera, document_camera=doc))
