"""Test-wide set-up: import paths and Kivy's environment (before anything imports Kivy)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
if "KIVY_HOME" not in os.environ:
    # Shared with every process the tests start (they inherit it), removed when the test run ends.
    from kiosk.ui.env import make_temp_kivy_home

    os.environ["KIVY_HOME"] = make_temp_kivy_home()
