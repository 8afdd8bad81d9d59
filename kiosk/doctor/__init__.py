"""``kiosk doctor``: a technician's checklist for one terminal, with one line of advice per problem.

::

    kiosk doctor --config /etc/kiosk/counter.toml [--role counter|office|lamp] [--url URL] [--json]
                 [--snapshot-dir DIR] [--lamp-port URL] [--skip CHECK] ...

Each check is a small function that returns :class:`CheckResult` (name, ok, detail, advice), so each can be
tested on its own; the I/O they need is done by a few probes (:func:`probe_relay`, :func:`measure_camera`,
:func:`stun_ping`, …) whose raw findings are turned into results by pure functions (``*_result``). Probes turn
the exceptions they catch into typed causes (enums per family); the advice is chosen from the cause, never from
the text of an error. The command prints ✓/✗ per check and exits 1 if anything failed (2 for a bad command line).

One module per family of checks:

* :mod:`~kiosk.doctor.report`: :class:`CheckResult` and the printed checklist.
* :mod:`~kiosk.doctor.inventory`: the config file, video devices, serial ports, sound cards, ICE addresses.
* :mod:`~kiosk.doctor.cameras`, :mod:`~kiosk.doctor.audio`, :mod:`~kiosk.doctor.lamp`: the devices.
* :mod:`~kiosk.doctor.relay`: reachability, TLS, token, role, round trip, clock.
* :mod:`~kiosk.doctor.ice`: the STUN/TURN servers; :mod:`~kiosk.doctor.stun` is their pure message codec.
* :mod:`~kiosk.doctor.checklist`: which checks run for which role, and ``main``.

What is checked, per role (``counter`` and ``office``: media; ``lamp``, or an ``office`` with ``[lamp]``: lamp):

* ``config``: the file loads (errors name file, line and key); the role comes from ``--role``, else from the
  file's sections, else from its name.
* ``video devices``, ``serial ports``, ``audio devices``: what this PC has (always ✓; for reference).
* ``camera``, ``document camera``: opens, delivers frames of the configured size at the configured rate
  (measured over a short window) and saves a snapshot PNG.
* ``microphone``, ``speaker``: the devices open; the microphone hears something.
* ``ICE addresses``: every ``[network] ice_addresses`` entry exists on this PC.
* ``lamp``: each configured channel is switched on and off once (the lamp agent's own channel test).
* ``relay reachable``, ``relay TLS``, ``relay token``, ``terminal role``, ``relay round trip``,
  ``clock offset``: TCP, TLS certificate, ``hello``/``welcome``, ``ping``/``pong`` (docs/protocol.md).
* ``lamp departments``: ``[lamp.channels]`` matches the departments the relay sends this terminal.
* ``ICE server …``: each STUN/TURN server from ``welcome.ice_servers`` answers a STUN binding request.

Note: the doctor logs in to the relay with this terminal's token. A kiosk running on this PC with the same token
is disconnected for a moment (close code 4409) and reconnects by itself; do not run the doctor during a call.
"""

from __future__ import annotations

from kiosk.doctor.audio import MIC_MIN_LEVEL, check_audio, microphone_result
from kiosk.doctor.cameras import (
    FPS_TOLERANCE,
    CameraCause,
    CameraMeasurement,
    camera_result,
    check_camera,
    measure_camera,
)
from kiosk.doctor.checklist import CHECK_NAMES, DoctorOptions, main, run_doctor
from kiosk.doctor.ice import IceCause, IceProbe, check_ice_servers, ice_server_result, stun_ping
from kiosk.doctor.inventory import (
    ROLES,
    ConfigCause,
    audio_devices_result,
    check_config,
    check_ice_addresses,
    infer_role,
    list_serial_ports,
    list_video_devices,
    serial_ports_result,
    video_devices_result,
)
from kiosk.doctor.lamp import LampCause, check_lamp, lamp_departments_result
from kiosk.doctor.relay import (
    RelayProbe,
    TcpCause,
    TlsCause,
    probe_relay,
)
from kiosk.doctor.relay_judges import (
    CERT_MIN_DAYS,
    CLOCK_LIMIT_S,
    RTT_LIMIT_S,
    clock_result,
    reachable_result,
    role_result,
    rtt_result,
    tls_result,
    token_result,
)
from kiosk.doctor.report import CheckResult, format_report
from kiosk.doctor.stun import STUN_MAGIC, parse_ice_url, parse_stun_response, stun_binding_request

__all__ = [
    "CERT_MIN_DAYS",
    "CHECK_NAMES",
    "CLOCK_LIMIT_S",
    "FPS_TOLERANCE",
    "MIC_MIN_LEVEL",
    "ROLES",
    "RTT_LIMIT_S",
    "STUN_MAGIC",
    "CameraCause",
    "CameraMeasurement",
    "CheckResult",
    "ConfigCause",
    "DoctorOptions",
    "IceCause",
    "IceProbe",
    "LampCause",
    "RelayProbe",
    "TcpCause",
    "TlsCause",
    "audio_devices_result",
    "camera_result",
    "check_audio",
    "check_camera",
    "check_config",
    "check_ice_addresses",
    "check_ice_servers",
    "check_lamp",
    "clock_result",
    "format_report",
    "ice_server_result",
    "infer_role",
    "lamp_departments_result",
    "list_serial_ports",
    "list_video_devices",
    "main",
    "measure_camera",
    "microphone_result",
    "parse_ice_url",
    "parse_stun_response",
    "probe_relay",
    "reachable_result",
    "role_result",
    "rtt_result",
    "run_doctor",
    "serial_ports_result",
    "stun_binding_request",
    "stun_ping",
    "tls_result",
    "token_result",
    "video_devices_result",
]
