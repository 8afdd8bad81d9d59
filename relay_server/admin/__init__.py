"""The technician's fleet page: terminals' health, live calls, monthly charts and test actions in a browser.

Pure parts (no I/O): :mod:`.settings` (``[fleet]`` and ``[[admin]]`` of ``relay.toml``, scrypt password hashes),
:mod:`.auth` (sessions, CSRF tokens, lock-out), :mod:`.fleet` (what the page shows, from the relay core and the
health reports), :mod:`.charts` (monthly numbers per department from the call log).
Edges: :mod:`.store` (SQLite: health, its history, the audit log), :mod:`.http` (a small HTTP/1.1 server),
:mod:`.service` (the routes, server-sent events and actions, wired to a running ``RelayServer``).
"""
