"""The tools that deliberately start a relay next to terminals or drive their windows: the only place in ``kiosk``
allowed to import ``relay_server`` (checked by ``tests/test_architecture_imports.py``).

- :mod:`kiosk.tools.demo`: ``kiosk demo`` (``scripts/demo``): relay, counter, two stations and a lamp on one
  machine; :mod:`kiosk.tools.demo_lamp` (with ``demo_lamp.kv``) is the demo's lamp window.
- :mod:`kiosk.tools.screenshots`: ``scripts/screenshots``; each app registers its scenes module in ``SCENES``:
  :mod:`kiosk.tools.counter_shots`, :mod:`kiosk.tools.office_shots`, :mod:`kiosk.tools.assist_shots`, on the
  set-up they share with the UI tests in :mod:`kiosk.tools.scenes`.

Nothing outside this package and ``tests``/``bench`` imports it: the terminals' programs never start a relay.
"""
