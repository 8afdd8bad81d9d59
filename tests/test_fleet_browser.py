"""The fleet page in Debian's Chromium, driven by Playwright, against a real relay on 127.0.0.1.

Each test starts a relay with the page on (``[fleet]``), a call log seeded with about 40 days of calls, the
terminals it needs (bare protocol clients, headless terminals with real sources, the real lamp agent on an
emulated board) and a fresh browser. Screenshots go to ``$FLEET_SCREENSHOTS`` (``docs/screenshots`` through
``scripts/fleet-screenshots``) or to the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fleet_support import (
    DEMO_PASSWORD,
    DEMO_USER,
    USER,
    chromium,
    fleet_relay,
    lamp_agent,
    log_in,
    previous_month,
    small_terminal,
)
from helpers import COUNTER, LAMP, OFFICE1, OFFICE2, WsClient, wait_until

from common.protocol import CLOSE_ADMIN
from kiosk.devices.lamp import ChannelState
from relay_server.admin.charts import report_csv

pytest.importorskip("playwright")
if not Path("/usr/bin/chromium").exists():  # pragma: no cover - scripts/setup installs it
    pytest.skip("Debian's chromium is not installed (scripts/setup installs it)", allow_module_level=True)

from playwright.async_api import expect  # noqa: E402


def row(page: Any, terminal: str) -> Any:
    return page.locator(f'#terminals tr[data-terminal="{terminal}"]')


async def test_login_fails_with_a_wrong_password_and_succeeds_with_the_right_one(tmp_path: Path) -> None:
    """A wrong password keeps the visitor on the login page with an error; the right one opens the fleet page."""
    async with fleet_relay(tmp_path, seed=False) as rig, chromium() as ctx:
        page = await ctx.new_page()
        await page.goto(rig.url)
        await expect(page).to_have_url(rig.url + "login")
        await log_in(page, rig.url, password="wrong")
        await expect(page.locator("#error")).to_have_text("Wrong user name or password.")
        assert not [c for c in await ctx.cookies() if c["name"] == "fleet_session"]
        await log_in(page, rig.url)
        await expect(page).to_have_url(rig.url)
        await expect(page.locator("#me")).to_have_text(USER)
        await expect(row(page, COUNTER)).to_be_visible()
        cookie = next(c for c in await ctx.cookies() if c["name"] == "fleet_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        await page.click("#logout")
        await expect(page).to_have_url(rig.url + "login")
        assert (await ctx.request.get(rig.url + "api/state")).status == 401


async def test_repeated_failures_lock_the_login_and_demo_login_works_on_loopback(tmp_path: Path) -> None:
    """The demo account logs in from 127.0.0.1; after three failures the right password is refused as locked."""
    async with fleet_relay(tmp_path, seed=False, lockout_failures=3) as rig, chromium() as ctx:
        page = await ctx.new_page()
        await log_in(page, rig.url, user=DEMO_USER, password=DEMO_PASSWORD)
        await expect(page).to_have_url(rig.url)
        await page.click("#logout")
        await expect(page).to_have_url(rig.url + "login")
        for _ in range(3):
            await log_in(page, rig.url, password="nope")
            await expect(page.locator("#error")).to_be_visible()
        await log_in(page, rig.url)
        await expect(page.locator("#error")).to_have_text("Locked after repeated failures. Try again later.")
        audit = [(e.user, e.result) for e in rig.relay.fleet.recent_audit if e.action == "login"]
        assert audit == [(USER, "locked")] + [(USER, "wrong")] * 3 + [(DEMO_USER, "ok")]


async def test_nothing_is_reachable_without_the_session_cookie(tmp_path: Path) -> None:
    """Every page, file and data URL refuses a request without a valid session; actions also need the CSRF token;
    no terminal token appears in anything the page receives."""
    async with fleet_relay(tmp_path) as rig, chromium() as ctx:
        api = ctx.request
        for path in ("", "static/fleet.js", "static/charts.js", "static/fleet.html"):
            resp = await api.get(rig.url + path, max_redirects=0)
            assert resp.status == 303 and resp.headers["location"] == "/login", path
        for path in (
            "api/state",
            "api/events",
            "api/charts",
            "api/report.csv?month=2026-11",
            "api/audit",
            "api/me",
            "api/history?terminal=counter-sapporo-1",
        ):
            resp = await api.get(rig.url + path, headers={"Cookie": "fleet_session=forged"})
            assert resp.status == 401, path
            assert "juumin" not in await resp.text()
        resp = await api.post(rig.url + "api/action", data={"action": "disconnect", "target": COUNTER})
        assert resp.status == 401
        page = await ctx.new_page()
        await log_in(page, rig.url)
        await expect(page.locator("#me")).to_have_text(USER)
        resp = await api.post(rig.url + "api/action", data={"action": "disconnect", "target": COUNTER})
        assert resp.status == 403  # logged in, but no CSRF token
        body = await (await api.get(rig.url + "api/state")).text()
        assert "juumin" in body and "token" not in body and "sha256:" not in body


async def test_a_terminal_going_offline_shows_within_two_seconds(tmp_path: Path) -> None:
    """A station that disconnects turns offline on the open page within 2 s, without reloading, and moves up."""
    async with fleet_relay(tmp_path, seed=False) as rig, chromium() as ctx:
        clients = [await WsClient.open(rig.relay.url, t) for t in (COUNTER, OFFICE1, OFFICE2, LAMP)]
        page = await ctx.new_page()
        await log_in(page, rig.url)
        await expect(row(page, OFFICE2).locator(".badge")).to_have_text("online")
        await page.evaluate("window.__marker = 1")  # survives only if the page is not reloaded
        await clients[2].close()
        await wait_until(lambda: not rig.relay.fleet.state.links[OFFICE2].online, timeout=10)
        noticed = time.monotonic()
        await expect(row(page, OFFICE2).locator(".badge")).to_have_text("offline", timeout=2000)
        assert time.monotonic() - noticed < 2.0
        assert await page.evaluate("window.__marker") == 1
        first = await page.locator("#terminals tbody tr").first.get_attribute("data-terminal")
        assert first == OFFICE2  # problems first
        for c in clients[:2] + clients[3:]:
            await c.close()


async def test_a_call_appears_while_ringing_and_shows_its_members_when_answered(tmp_path: Path) -> None:
    """A ringing call is listed at once; once a station answers it shows as answered with both members."""
    async with fleet_relay(tmp_path, seed=False) as rig, chromium() as ctx:
        counter = await WsClient.open(rig.relay.url, COUNTER)
        office = await WsClient.open(rig.relay.url, OFFICE1)
        page = await ctx.new_page()
        await log_in(page, rig.url)
        await expect(page.locator("#no-calls")).to_be_visible()
        await counter.send({"type": "call", "department": "juumin"})
        call = (await counter.expect("ringing"))["call"]
        line = page.locator(f'#calls tr[data-call="{call}"]')
        await expect(line.locator(".badge")).to_have_text("ringing")
        await expect(line).to_contain_text("Residents Division")
        await office.expect("incoming")
        await office.send({"type": "answer", "call": call})
        await expect(line.locator(".badge")).to_have_text("answered")
        await expect(line.locator(".members")).to_have_text(f"{COUNTER}, {OFFICE1}")
        await counter.send({"type": "hangup", "call": call})
        await expect(page.locator("#no-calls")).to_be_visible()
        await expect(page.locator("#today-calls")).to_have_text("1")
        for c in (counter, office):
            await c.close()


async def test_a_counter_whose_document_camera_is_missing_is_listed_first(tmp_path: Path) -> None:
    """A real headless counter whose document camera does not exist reports it; the page lists that counter
    first, marks the device missing with the reason, and the change is in its health history."""
    from kiosk.headless import HeadlessCounter, HeadlessStation

    async with fleet_relay(tmp_path, seed=False) as rig, chromium() as ctx:
        url = rig.relay.url
        station = HeadlessStation(small_terminal("office.toml", "office"), url=url, auto_answer=None)
        counter = HeadlessCounter(
            small_terminal("counter.toml", "counter", document="/dev/video-fleet-missing"), url=url
        )
        async with station, counter:
            page = await ctx.new_page()
            await log_in(page, rig.url)
            device = row(page, COUNTER).locator('[data-device="document_camera"]')
            await expect(device).to_contain_text("Document camera: missing", timeout=15000)
            await expect(device).to_contain_text("/dev/video-fleet-missing")
            await expect(page.locator("#terminals tbody tr").first).to_have_attribute(
                "data-terminal", COUNTER
            )
            await expect(row(page, COUNTER)).to_have_class("problem")
            await expect(row(page, OFFICE1).locator('[data-device="camera"]')).to_contain_text("Camera: ok")
            await row(page, COUNTER).locator('button[data-action="history"]').click()
            change = page.locator('#history tr[data-what="device:document_camera"]').first
            await expect(change).to_contain_text("Document camera")
            await expect(change).to_contain_text("missing — V4L2 /dev/video-fleet-missing")


async def test_charts_render_from_the_seeded_call_log_with_the_csv(tmp_path: Path) -> None:
    """The previous month's seeded calls draw a bar per day with calls and wait lines per department, and the CSV
    link downloads exactly what `relay-server report --csv` prints."""
    async with fleet_relay(tmp_path) as rig, chromium() as ctx:
        month = previous_month(time.time())
        page = await ctx.new_page()
        await log_in(page, rig.url)
        await page.fill("#month", month)
        await page.locator("#month").dispatch_event("change")
        card = page.locator(f'#charts[data-month="{month}"] .chart-card[data-department="juumin"]')
        await expect(card.locator("svg.bars g.day").first).to_be_visible()
        bars = await card.locator("svg.bars g.day").count()
        tz = ZoneInfo("Asia/Tokyo")
        mine = [
            r
            for r in rig.records
            if r.department == "juumin"
            and r.outcome in ("answered", "unanswered", "cancelled")
            and datetime.fromtimestamp(r.created_at, tz).strftime("%Y-%m") == month
        ]
        assert mine and bars == len({datetime.fromtimestamp(r.created_at, tz).day for r in mine})
        await expect(card.locator(".figure").first).to_contain_text(f"{len(mine)}Calls")
        assert await card.locator("svg.lines.wait polyline.p90").count() == 1
        assert await card.locator("svg.lines.duration polyline.p50").count() == 1
        async with page.expect_download() as info:
            await page.click("#csv")
        download = await info.value
        text = Path(await download.path()).read_text()
        assert text == report_csv(rig.relay.config, rig.records, month)
        assert text.startswith("department,calls,answered")


async def test_each_action_works_and_is_audited(tmp_path: Path) -> None:
    """Lighting a lamp channel lights the (emulated) board, a test ring reaches the station, disconnect closes the
    terminal with 4410; each lands in the audit log with the user."""
    async with (
        fleet_relay(tmp_path, seed=False) as rig,
        lamp_agent(rig.relay.url) as board,
        chromium() as ctx,
    ):
        office = await WsClient.open(rig.relay.url, OFFICE2)
        counter = await WsClient.open(rig.relay.url, COUNTER)
        await wait_until(lambda: LAMP in rig.relay.conns, timeout=10)
        page = await ctx.new_page()
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await log_in(page, rig.url)

        await row(page, LAMP).locator('button[data-action="lamp"][data-dept="zeimu"]').click()
        await board.wait_state(
            {1: ChannelState.OFF, 2: ChannelState.ON, 3: ChannelState.OFF, 4: ChannelState.OFF}, timeout=5
        )
        await expect(page.locator("#action-result")).to_contain_text("light lamp: lamp-tobetsu-1")

        await row(page, OFFICE2).locator('button[data-action="ring"]').click()
        ring = await office.expect("ring_test")
        assert ring["by"] == f"fleet:{USER}" and ring["seconds"] > 0

        await row(page, COUNTER).locator('button[data-action="disconnect"]').click()
        await asyncio.wait_for(counter.ws.wait_closed(), 5)
        assert counter.ws.close_code == CLOSE_ADMIN

        audit = page.locator("#audit tbody tr")
        await expect(audit.filter(has_text="disconnect")).to_contain_text(COUNTER)
        await expect(audit.filter(has_text="test ring")).to_contain_text(OFFICE2)
        await expect(audit.filter(has_text="light lamp")).to_contain_text("lamp-tobetsu-1/zeimu")
        for action in ("disconnect", "test ring", "light lamp"):
            await expect(audit.filter(has_text=action)).to_contain_text(USER)
        await wait_until(lambda: len(rig.relay.fleet.recent_audit) >= 4, timeout=5)
        await office.close()
    # the audit log is in SQLite, not only on the page
    from relay_server.admin.store import FleetStore

    with FleetStore(tmp_path / "relay.sqlite3") as store:
        actions = [(e.user, e.action, e.target, e.result) for e in store.audit_log()]
    assert (USER, "lamp", "lamp-tobetsu-1/zeimu", "sent") in actions
    assert (USER, "ring", OFFICE2, "sent") in actions and (USER, "disconnect", COUNTER, "sent") in actions


async def test_screenshots_of_the_demo_fleet_in_japanese_and_english(tmp_path: Path) -> None:
    """The demo's terminals with one failing device, a live call and a month of seeded calls, in both languages;
    the Japanese page shows Japanese labels. Written to $FLEET_SCREENSHOTS (docs/screenshots) when set."""
    from kiosk.headless import HeadlessCounter, HeadlessStation

    out = Path(os.environ.get("FLEET_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    async with fleet_relay(tmp_path) as rig, lamp_agent(rig.relay.url):
        url = rig.relay.url
        station1 = HeadlessStation(small_terminal("office.toml", "office"), url=url, auto_answer=0.5)
        station2 = HeadlessStation(small_terminal("office-2.toml", "office"), url=url, auto_answer=None)
        counter = HeadlessCounter(
            small_terminal("counter.toml", "counter", document="/dev/video-document"), url=url
        )
        async with station1, station2, counter:
            await counter.wait_up(10)
            await counter.call("juumin")
            await wait_until(lambda: station1.in_call, timeout=15)
            await wait_until(
                lambda: (
                    (rig.relay.fleet.state.health.get(COUNTER, {}).get("last_call") or {}).get("path")
                    is not None
                ),
                timeout=30,
                interval=0.2,
            )
            for locale, lang in (("ja-JP", "ja"), ("en-US", "en")):
                async with chromium(locale) as ctx:
                    page = await ctx.new_page()
                    await page.goto(rig.url + "login")
                    await page.screenshot(path=str(out / f"fleet-login-{lang}.png"))
                    await log_in(page, rig.url)
                    await expect(page.locator("#calls .badge").first).to_be_visible()
                    await page.fill("#month", previous_month(time.time()))
                    await page.locator("#month").dispatch_event("change")
                    await expect(
                        page.locator(
                            f'#charts[data-month="{previous_month(time.time())}"] '
                            '.chart-card[data-department="juumin"] svg.bars'
                        )
                    ).to_be_visible()
                    await page.evaluate("document.activeElement.blur()")
                    await row(page, COUNTER).locator('button[data-action="history"]').click()
                    await expect(page.locator("#history tbody tr").first).to_be_visible()
                    if lang == "ja":
                        await expect(page.locator("#terminals-h")).to_have_text("端末")
                        await expect(row(page, COUNTER)).to_contain_text("書画カメラ: 見つからない")
                    await page.screenshot(path=str(out / f"fleet-{lang}.png"), full_page=True)
    for name in ("fleet-ja.png", "fleet-en.png", "fleet-login-ja.png"):
        assert (out / name).stat().st_size > 5_000


async def test_under_tls_the_page_is_https_and_its_cookie_secure(tmp_path: Path) -> None:
    """With the relay's certificate the page is served over HTTPS and the session cookie is Secure as well."""
    from dataclasses import replace

    from fleet_support import fleet_config
    from helpers import make_cert

    from relay_server.server import RelayServer

    cert, key = make_cert(tmp_path)
    relay = await RelayServer(replace(fleet_config(tmp_path), tls_cert=str(cert), tls_key=str(key))).start(
        host="127.0.0.1", port=0
    )
    try:
        url = relay.fleet.url
        assert url.startswith("https://127.0.0.1:")
        async with chromium() as ctx0:
            browser = ctx0.browser
            ctx = await browser.new_context(ignore_https_errors=True)
            page = await ctx.new_page()
            await log_in(page, url)
            await expect(page.locator("#me")).to_have_text(USER)
            cookie = next(c for c in await ctx.cookies() if c["name"] == "fleet_session")
            assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            await ctx.close()
    finally:
        await relay.close()
