"""What the relay and every terminal share: the wire protocol, TOML config loading, structured log lines.

``relay_server`` and ``kiosk`` both import from here and never from each other (docs/architecture.md).
This package imports no I/O library.
"""
