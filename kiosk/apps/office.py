"""``kiosk office``: the staff station. Dispatches to the headless station or the Kivy UI.

A minimal dispatcher: ``--headless`` runs :mod:`kiosk.headless`; anything else runs the UI in
``kiosk.apps.office_ui`` (which owns its own options).
"""

from __future__ import annotations

import importlib


def main(argv: list[str]) -> int:
    """Run the staff station; ``--headless`` selects the station without a UI."""
    if "--headless" in argv:
        from kiosk.headless import main as headless_main

        return headless_main(argv)
    ui = importlib.import_module("kiosk.apps.office_ui")
    return int(ui.main(argv) or 0)
