"""The staff station's Kivy app (offscreen window) and the fleet page's relay: the app reports its health on
connect and rings for the page's test ring."""

from __future__ import annotations

from kiosk.ui.env import configure_window, prepare_kivy_env

prepare_kivy_env(headless=True)
configure_window(1280, 800)

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from fleet_support import fleet_relay  # noqa: E402
from helpers import OFFICE1, ROOT  # noqa: E402

from kiosk.apps.office_ui import OfficeApp  # noqa: E402
from kiosk.config import load_terminal_config  # noqa: E402
from kiosk.tools.scenes import small_media  # noqa: E402
from kiosk.ui.driver import running_app  # noqa: E402
from relay_server.core import Send  # noqa: E402


async def test_station_app_reports_health_and_rings_for_a_test(tmp_path: Path) -> None:
    """The real station app sends 'health' (its camera ok, its version) once connected, and a 'ring_test' from
    the fleet page rings it for the given time and then stops."""
    async with fleet_relay(tmp_path, seed=False) as rig:
        office = load_terminal_config(ROOT / "config" / "office.toml", "office")
        office = office.with_overrides(ui=replace(office.ui, ring_sound=False, width=1280, height=800))
        app = OfficeApp(small_media(office, (160, 90), None), url=rig.relay.url)
        try:
            async with running_app(app) as ui:
                await ui.until(lambda: app.state_name == "waiting" and app.link_ok, 15, "the waiting screen")
                health = rig.relay.fleet.state.health
                await ui.until(
                    lambda: health.get(OFFICE1, {}).get("devices", {}).get("camera") == {"state": "ok"},
                    15,
                    "the station's health report with its camera ok",
                )
                assert health[OFFICE1]["version"].startswith("kiosk ")
                assert not rig.relay.fleet.state.problems(OFFICE1)
                rig.relay.inject([Send(OFFICE1, {"type": "ring_test", "by": "fleet:tech", "seconds": 0.5})])
                await ui.until(lambda: app.ring.playing, 5, "the test ring")
                assert app.state_name == "waiting"  # a test ring is not a call
                await ui.until(lambda: not app.ring.playing, 5, "the end of the test ring")
        finally:
            await app.aclose()
