"""The demo's lamp: an emulated LCUS board on a pseudo-terminal, driven by the real lamp agent code,
shown in a small window so a person sees it light when the resident touches a department.

``python -m kiosk.tools.demo_lamp --config config/lamp.toml [--url URL]`` (started by ``kiosk demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from kiosk.ui.env import configure_window, prepare_kivy_env, restore_std_streams

KV = Path(__file__).resolve().parent / "demo_lamp.kv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kiosk.tools.demo_lamp", description=__doc__)
    ap.add_argument("--config", default="config/lamp.toml")
    ap.add_argument("--url", help="relay URL overriding [relay] url")
    args = ap.parse_args(argv)
    prepare_kivy_env()
    configure_window(960, 300)

    from kivy.app import App
    from kivy.clock import Clock
    from kivy.lang import Builder
    from kivy.properties import BooleanProperty, ListProperty, StringProperty
    from kivy.uix.boxlayout import BoxLayout

    from kiosk.client import RelayClient
    from kiosk.config import load_terminal_config
    from kiosk.devices.emulated import EmulatedLcusBoard
    from kiosk.devices.lamp import ChannelState
    from kiosk.lamp_agent import LampController, channel_labels
    from kiosk.ui.fonts import find_cjk_font, register_cjk_font

    restore_std_streams()
    register_cjk_font(find_cjk_font())
    cfg = load_terminal_config(args.config, "lamp")
    assert cfg.lamp is not None

    class LampLight(BoxLayout):
        lit = BooleanProperty(False)
        label = StringProperty("")
        lit_colour = ListProperty([1.0, 0.55, 0.1, 1])

    class LampPanel(BoxLayout):
        title = StringProperty("")

    Builder.load_file(str(KV))

    class LampApp(App):
        title = "Emulated lamp (demo)"

        def build(self) -> LampPanel:
            labels = channel_labels(cfg.lamp)  # type: ignore[arg-type]
            self.board = EmulatedLcusBoard(max(4, *labels), labels=labels).start()
            self.controller = LampController(cfg.lamp, port=self.board.url)  # type: ignore[arg-type]
            self.client = RelayClient.for_link(
                cfg.relay,
                url=args.url,
                on_message=self.controller.on_message,
                on_link=self.controller.on_link,
                client_name="demo-lamp",
            )
            self.panel = LampPanel(title=f"{self.board.kind} on {self.board.url}  (emulated, demo)")
            self.lights = {ch: LampLight(label=f"{ch}: {text}") for ch, text in sorted(labels.items())}
            for light in self.lights.values():
                self.panel.ids.lights.add_widget(light)
            self.named = False
            Clock.schedule_interval(self.refresh, 0.05)
            return self.panel

        def on_start(self) -> None:
            self.controller.start()
            self.client.start()

        def refresh(self, _dt: float) -> None:
            welcome = self.client.welcome
            if welcome and not self.named:
                # Department names come from the relay: the lamp config only knows their ids.
                names = {d["id"]: d["name"]["ja"] for d in welcome.get("departments", [])}
                for ch, text in channel_labels(cfg.lamp).items():  # type: ignore[arg-type]
                    if ch in self.lights:
                        shown = "+".join(names.get(part, part) for part in text.split("+"))
                        self.lights[ch].label = f"{ch}: {shown}"
                self.named = True
            for ch, state in self.board.snapshot().items():
                if ch in self.lights:
                    self.lights[ch].lit = state is ChannelState.ON

    async def run() -> None:
        app = LampApp()
        try:
            await app.async_run(async_lib="asyncio")
        finally:
            await app.client.close()
            await app.controller.close()
            app.board.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
