"""Calls between two buildings, measured in the namespace test bed (tests/netbed.py; needs root).

``python -m bench --only network``. Each case runs real terminals (tests/netbed_peer.py) in network namespaces,
through two NAT routers, a relay on wss:// and a real coturn:

* answer → first frame (the station's camera at the counter) over the host path (both on one LAN), TURN/UDP
  (two NATs, the town's symmetric) and TURN/TLS (the town's firewall lets only TCP 443/8765 out);
* recovery after a 10 s cut of the town's uplink that comes back through a new NAT mapping: restore → media again;
* the document under bad links (3 % loss both ways, 1 Mbit/s both ways): camera and document frames per second at
  the station, and the time for a lossless still (640×480 PNG) to arrive intact.

Samples are small (the machine is shared); compare the rows of one run with each other, not across machines.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, Stats

sys.path.insert(0, str(ROOT / "tests"))

COUNTER_ID, STATION_ID = "counter-sapporo-1", "office-tobetsu-1"


def _stats(values: list[float]) -> Stats:
    return Stats.of(values, tail_p=100)  # few samples: the tail is the worst one


def _call(bed: Any, name: str, *, station_ns: str | None = None, hold: float = 0.0) -> dict[str, Any]:
    """One call: answer → first camera frame at the counter, then (optionally) frame rates over ``hold`` s."""
    station = bed.peer("station", f"station-{name}", ns=station_ns)
    counter = bed.peer("counter", f"counter-{name}")
    try:
        counter.send("call juumin")
        joined = counter.wait_event(lambda e: e["event"] == "member_joined", 30, "answered")
        first = counter.wait_event(
            lambda e: e["event"] == "first_frame" and e.get("track") == "camera", 30, "first camera frame"
        )
        path = counter.wait_event(lambda e: e["event"] == "media_path", 10, "media path")
        s_path = station.wait_event(lambda e: e["event"] == "media_path", 10, "media path")
        out: dict[str, Any] = {
            "first_frame_s": first["t"] - joined["t"],
            "path": f"counter {path.get('summary')}, station {s_path.get('summary')}",
        }
        if hold:
            station.wait_event(
                lambda e: e["event"] == "frames" and e["tracks"].get(f"{COUNTER_ID}/document", 0) > 0,
                60,
                "document",
            )
            t0 = time.monotonic()
            start = dict(station.events[-1]["tracks"]) if station.events[-1]["event"] == "frames" else {}
            end_ev = station.wait_event(
                lambda e: e["event"] == "frames" and e["_rx"] >= t0 + hold, hold + 30, "frames after the hold"
            )
            span = end_ev["_rx"] - t0
            for label in ("camera", "document"):
                key = f"{COUNTER_ID}/{label}"
                out[f"{label}_fps"] = (end_ev["tracks"].get(key, 0) - start.get(key, 0)) / span
            station.send("still")
            got = station.wait_event(lambda e: e["event"] in ("still", "error"), 120, "still")
            sent = counter.wait_event(lambda e: e["event"] == "still_sent", 10, "still sent")
            out["still_s"] = got.get("seconds")
            out["still_intact"] = got["event"] == "still" and got.get("sha256") == sent.get("pixels_sha256")
        counter.send("hangup")
        return out
    finally:
        counter.stop()
        station.stop()


def _outage(bed: Any, name: str) -> float:
    """Cut the town for 10 s mid-call, restore with a new NAT mapping; seconds from restore to media at both ends."""
    station = bed.peer("station", f"station-{name}")
    counter = bed.peer("counter", f"counter-{name}")
    try:
        counter.send("call juumin")
        counter.wait_event(
            lambda e: e["event"] == "first_frame" and e.get("track") == "camera", 30, "first frame"
        )
        station.wait_event(
            lambda e: e["event"] == "first_frame" and e.get("track") == "camera", 30, "first frame"
        )
        bed.cut_town()
        time.sleep(10.0)  # the outage being measured
        bed.restore_town(new_mapping=True)
        restored = time.monotonic()
        a = counter.wait_event(lambda e: e["event"] == "reconnected", 40, "reconnected")
        b = station.wait_event(lambda e: e["event"] == "reconnected", 40, "reconnected")
        counter.send("hangup")
        return max(a["_rx"], b["_rx"]) - restored
    finally:
        bed.restore_town(new_mapping=False)
        counter.stop()
        station.stop()


def run(quick: bool = False, log: Any = print) -> tuple[list[Row], dict[str, Any]]:
    from netbed import NetBed, require_netbed

    require_netbed()
    n = 2 if quick else 5
    rows: list[Row] = []
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-net-") as tmp, NetBed(Path(tmp)) as bed:
        setups: list[tuple[str, str | None, Any]] = [
            ("host (one LAN)", "cs", None),
            ("TURN/UDP (two NATs, one symmetric)", None, None),
            ("TURN/TLS 443 (town web-only)", None, bed.web_only_town),
        ]
        for case, ns, prepare in setups:
            if prepare is not None:
                prepare()
            samples = []
            for i in range(n):
                r = _call(bed, f"{len(rows)}-{i}", station_ns=ns)
                samples.append(r)
                log(f"network {case}: answer → first frame {r['first_frame_s']:.3f} s over {r['path']}")
            bed.nft("rt", "flush chain inet bed outbound\n")
            values = [r["first_frame_s"] for r in samples]
            details[case] = samples
            rows.append(
                Row(
                    "network",
                    case,
                    "answer → first camera frame",
                    "s",
                    _stats(values),
                    goal_text="< 3 s",
                    goal=lambda o, b: o is not None and o.tail < 3.0,  # type: ignore[union-attr]
                    note=f"path {samples[-1]['path']}; n={n}",
                )
            )
        recoveries = []
        for i in range(1 if quick else 2):
            recoveries.append(_outage(bed, f"cut-{i}"))
            log(f"network outage: media back {recoveries[-1]:.1f} s after the link")
        details["recovery_s"] = recoveries
        rows.append(
            Row(
                "network",
                "10 s town cut, new NAT mapping",
                "link restored → media at both ends",
                "s",
                _stats(recoveries),
                goal_text="< reconnect_window (30 s)",
                goal=lambda o, b: o is not None and o.tail < 30.0,  # type: ignore[union-attr]
                note="includes the station's websocket reconnecting",
            )
        )
        for case, apply, undo in (
            ("clean link", lambda: None, lambda: None),
            ("3 % loss both ways", lambda: bed.set_loss(3), lambda: bed.set_loss(0)),
            ("1 Mbit/s town link", lambda: bed.set_uplink("1mbit"), lambda: bed.set_uplink(None)),
        ):
            apply()
            try:
                r = _call(bed, f"bad-{case[:4]}", hold=10.0)
            finally:
                undo()
            details[case] = r
            log(f"network {case}: {r}")
            rows.append(
                Row(
                    "network",
                    case,
                    "camera frames/s at the station",
                    "fps",
                    r["camera_fps"],
                    note="sent at 10 fps, 320×180",
                )
            )
            rows.append(
                Row(
                    "network",
                    case,
                    "document frames/s at the station",
                    "fps",
                    r["document_fps"],
                    note="sent at 2 fps, 640×480",
                )
            )
            intact = bool(r["still_intact"])

            def still_goal(o: Any, b: Any, ok: bool = intact) -> bool:
                return ok

            rows.append(
                Row(
                    "network",
                    case,
                    "lossless still 640×480 arrives intact",
                    "s",
                    float(r["still_s"]) if r.get("still_s") is not None else None,
                    goal_text="intact",
                    goal=still_goal,
                    note="pixels SHA-256 equal" if intact else "DAMAGED or missing",
                )
            )
    return rows, details
