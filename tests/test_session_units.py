"""Pure parts of the call media: the offer rule, still framing and verification, ICE configuration."""

from __future__ import annotations

import hashlib
import json

import aioice.ice
import numpy as np
import pytest

from kiosk.video import ice
from kiosk.video.session import offers_to
from kiosk.video.still import (
    CHUNK_BYTES,
    StillAssembler,
    StillError,
    encode_png,
    frame_messages,
    pixels_sha256,
    verify,
)


def _frame(w: int = 97, h: int = 61) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_offer_rule_counter_offers_and_earlier_staff_offers_to_newcomer() -> None:
    """The counter offers to everyone; between staff the earlier member offers and a newcomer never does."""
    order = ["counter", "a", "b"]
    assert offers_to("counter", "a", counter="counter", order=order)
    assert not offers_to("a", "counter", counter="counter", order=order)
    assert offers_to("a", "b", counter="counter", order=order)
    assert not offers_to("b", "a", counter="counter", order=order)
    assert offers_to("a", "c", counter="counter", order=order), "a member not yet listed is the newcomer"
    assert not offers_to("c", "a", counter="counter", order=order)


def test_still_roundtrip_is_lossless_and_chunked() -> None:
    """A still framed into chunks and reassembled decodes to exactly the captured pixels."""
    rgb = _frame(400, 300)
    png = encode_png(rgb)
    msgs = frame_messages("s1", rgb, png, 123)
    header = json.loads(msgs[0])
    assert header["bytes"] == len(png) and header["chunks"] == len(msgs) - 2
    assert all(isinstance(m, bytes) and len(m) <= CHUNK_BYTES for m in msgs[1:-1])
    asm = StillAssembler()
    done = None
    for m in msgs:
        done = asm.feed(m)
    assert done is not None
    still = verify(*done, member="counter-1")
    assert np.array_equal(still.rgb, rgb) and still.captured_ms == 123
    assert still.sha256 == hashlib.sha256(png).hexdigest()
    still.wipe()
    assert not still.rgb.any() and still.png == b""


def test_still_corruption_and_pixel_mismatch_are_rejected() -> None:
    """A flipped byte fails the file hash, and a PNG of different pixels fails the pixel hash."""
    rgb = _frame()
    png = encode_png(rgb)
    msgs = frame_messages("s2", rgb, png, 0)
    bad = bytearray(msgs[1])  # type: ignore[arg-type]
    bad[-1] ^= 0xFF
    asm = StillAssembler()
    asm.feed(msgs[0])
    for m in [bytes(bad), *msgs[2:-1]]:
        asm.feed(m)
    with pytest.raises(StillError, match="SHA-256"):
        asm.feed(msgs[-1])
    other = rgb.copy()
    other[0, 0, 0] ^= 1
    header = json.loads(frame_messages("s3", rgb, encode_png(other), 0)[0])
    with pytest.raises(StillError, match="differ from the captured frame"):
        verify(header, encode_png(other), "counter-1")
    with pytest.raises(StillError, match="without a 'begin' header"):
        StillAssembler().feed(b"\x00")
    with pytest.raises(StillError, match="no document frame"):
        StillAssembler().feed({"still": "error", "id": "x", "message": "no document frame captured yet"})
    assert pixels_sha256(rgb) != pixels_sha256(other)


def test_rtc_configuration_never_adds_a_public_stun_server() -> None:
    """An empty server list stays empty (host candidates only), and welcome entries are converted."""
    assert ice.rtc_configuration([]).iceServers == []
    assert ice.rtc_configuration(None).iceServers == []
    cfg = ice.rtc_configuration([{"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"}])
    assert cfg.iceServers is not None and cfg.iceServers[0].username == "u"
    with pytest.raises(ice.IceConfigError, match=r"ice_servers\[0\].*http://x"):
        ice.rtc_configuration([{"urls": "http://x"}])


def test_ice_restriction_includes_loopback_and_restores_default() -> None:
    """Listed addresses, loopback included, are the only host addresses; an empty list restores aioice's own."""
    before = ice.current_ice_addresses()
    try:
        assert ice.restrict_ice_addresses(["127.0.0.1"]) == ("127.0.0.1",)
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(False, True) == []
        assert "127.0.0.1" in ice.restrict_ice_addresses(["lo"]), "an interface name means its addresses"
        assert ice.restrict_ice_addresses([]) == ()
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)
        with pytest.raises(
            ice.IceConfigError, match="'nosuch0' is neither an IP address nor a network interface"
        ):
            ice.restrict_ice_addresses(["nosuch0"])
    finally:
        ice.restrict_ice_addresses(before)


async def test_a_member_that_leaves_is_no_longer_reconnecting() -> None:
    """An outage of a member that then leaves the call ends with it: the session no longer reports reconnecting."""
    from kiosk.video.local_media import LocalMedia
    from kiosk.video.session import CallSession

    async def send(msg: dict[str, object]) -> None:
        return None

    session = CallSession("counter-1", "counter", LocalMedia(None, None, None), send, call_id="c1")
    session.keeper.outage("office-1").begin(0.0)
    session.keeper.ever_connected.add("office-1")
    assert session.reconnecting() and session.reconnecting("office-1")
    await session._drop_member("office-1", "leave")
    assert not session.reconnecting() and "office-1" not in session.keeper.ever_connected
    await session.close()
