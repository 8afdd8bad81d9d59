"""``kiosk`` command: a thin dispatcher; each sub-command lives in its own module with its own arguments."""

from __future__ import annotations

import importlib
import os
import sys

# Kivy reads argv and writes ~/.kivy unless told otherwise; set before anything imports it.
os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")

COMMANDS = {
    "counter": ("kiosk.apps.counter", "the resident's counter kiosk (Kivy, touch)"),
    "office": ("kiosk.apps.office", "the staff station (Kivy), or --headless --auto-answer"),
    "lamp": ("kiosk.lamp_agent", "the lamp agent: lights a serial lamp for ringing calls"),
    "call-test": ("kiosk.call_test", "place a real call without a UI and print a report"),
    "doctor": ("kiosk.doctor", "check a terminal: config, cameras, serial ports, relay, network"),
    "demo": ("kiosk.tools.demo", "run relay, counter, two stations and an emulated lamp on this machine"),
}


def usage() -> str:
    lines = ["usage: kiosk COMMAND [options]   (kiosk COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"kiosk: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
