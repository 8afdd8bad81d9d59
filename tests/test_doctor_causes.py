"""The doctor's typed causes and its pure STUN codec: advice follows the kind of a failure, never its wording."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest
from helpers import ROOT

from common.tomlconf import ConfigError
from kiosk.devices.cameras import CameraNotFoundError, CameraOpenError, CameraReadError, CameraSpecError
from kiosk.devices.lamp import LampCommandError, LampNoAckError, LampPortError
from kiosk.doctor import cameras, inventory, lamp, relay, relay_judges, stun
from kiosk.doctor.cameras import CameraCause
from kiosk.doctor.inventory import ConfigCause
from kiosk.doctor.lamp import LampCause


def test_no_advice_from_error_text() -> None:
    """No doctor module picks advice by looking for words inside an error, status or printed text."""
    suspicious = ("err", "error", "text", "detail", "status", "message", "reason", "out")
    offenders = []
    for path in sorted((ROOT / "kiosk" / "doctor").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare) or not isinstance(node.left, ast.Constant):
                continue
            if not isinstance(node.left.value, str) or not any(
                isinstance(op, ast.In | ast.NotIn) for op in node.ops
            ):
                continue
            target = ast.unparse(node.comparators[0]).lower()
            if any(word in target for word in suspicious):
                offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("", ConfigCause.FILE_MISSING),
        ("[relay\nurl = 1\n", ConfigCause.SYNTAX),
        (
            '[relay]\nurl = "ws://127.0.0.1:1"\ntoken = "x"\ncolour = 1\n[terminal]\nlanguag = "ja"\n',
            ConfigCause.UNKNOWN_KEY,
        ),
        ('[relay]\nurl = "ws://127.0.0.1:1"\n', ConfigCause.MISSING_KEY),
        ('[relay]\nurl = 5\ntoken = "x"\n', ConfigCause.BAD_VALUE),
    ],
)
def test_config_causes(tmp_path: Path, text: str, cause: ConfigCause) -> None:
    """Each kind of config mistake is recognised by the loader's exception type and gets its own advice."""
    path = tmp_path / "office.toml"
    if text:
        path.write_text(text, encoding="utf-8")
    result, cfg, _ = inventory.check_config(path, "office")
    assert cfg is None and not result.ok
    assert result.advice == inventory.config_advice(cause, path)


def test_config_cause_of_plain_error() -> None:
    """A ConfigError of no more specific kind is a bad value."""
    assert (
        inventory.config_cause(ConfigError("x.toml:3: relay.url: expected string")) is ConfigCause.BAD_VALUE
    )


def test_camera_causes_from_exception_types() -> None:
    """Camera exceptions map to causes by type, whatever their messages say."""
    assert cameras.camera_cause(CameraSpecError("busy")) is CameraCause.SPEC
    assert cameras.camera_cause(CameraNotFoundError("permission")) is CameraCause.NOT_FOUND
    assert cameras.camera_cause(CameraOpenError("no such device")) is CameraCause.CANNOT_OPEN
    assert cameras.camera_cause(CameraReadError("no such device")) is CameraCause.STOPPED
    assert cameras.camera_cause(None) is CameraCause.STOPPED


def test_camera_advice_follows_cause_not_words() -> None:
    """A measurement whose error text mentions 'busy' but whose cause is NOT_FOUND gets the plug-it-in advice."""
    from kiosk.config import CameraConfig

    cfg = CameraConfig("/dev/video7", 160, 120, 10.0)
    m = cameras.CameraMeasurement("/dev/video7", error="busy busy", cause=CameraCause.NOT_FOUND)
    assert "plug it in" in cameras.camera_result("camera", "camera", cfg, m).advice


def test_lamp_causes_from_stage_and_type() -> None:
    """Lamp failures map to causes by the stage they happened in and their exception type."""
    assert lamp.lamp_cause([("open", LampPortError("x"))]) is LampCause.CANNOT_OPEN
    assert lamp.lamp_cause([("open", LampNoAckError("x"))]) is LampCause.NO_ANSWER
    assert lamp.lamp_cause([("command", LampNoAckError("x"))]) is LampCause.STOPPED_ANSWERING
    assert (
        lamp.lamp_cause([("command", LampNoAckError("x")), ("command", LampCommandError("x"))])
        is LampCause.REFUSED
    )
    assert lamp.lamp_cause([("command", LampPortError("cannot open lamp port"))]) is LampCause.FAILED


async def test_lamp_port_missing_is_cannot_open(tmp_path: Path) -> None:
    """A lamp port that does not exist fails with the plug-in/dialout advice."""
    from kiosk.config import LampConfig

    result = await lamp.check_lamp(LampConfig("ascii", str(tmp_path / "ttyUSB9"), {"juumin": 1}), dwell=0)
    assert not result.ok and "cannot be opened" in result.advice and "dialout" in result.advice


def test_lamp_stopped_answering_advice() -> None:
    """A lamp that answered PING and then left a command unacknowledged gets cable/power advice, not 'wrong port'."""
    errors: list[tuple[str, Exception]] = [("command", LampNoAckError("lamp did not acknowledge 'ON 1'"))]
    assert lamp.lamp_advice(lamp.lamp_cause(errors), "/dev/ttyUSB0").startswith(
        "the lamp on /dev/ttyUSB0 stopped"
    )


def test_tls_causes_from_verify_codes() -> None:
    """OpenSSL verification codes choose the TLS advice."""
    probe = relay.RelayProbe("wss://relay.example.jp:8765", host="relay.example.jp", port=8765, secure=True)
    for code, words in ((18, "ca_file"), (62, "not for 'relay.example.jp'"), (10, "expired")):
        err = ssl.SSLCertVerificationError()
        err.verify_code = code
        cause = relay._VERIFY_CAUSES[err.verify_code]
        probe.tls_error, probe.tls_cause = "whatever the library said", cause
        assert words in relay_judges.tls_result(probe).advice


# ---------------------------------------------------------------------------------------------------------------
# STUN codec (RFC 5389)
# ---------------------------------------------------------------------------------------------------------------
TID = bytes(range(12))


def test_stun_encode_decode_round_trip() -> None:
    """Attributes are padded to four bytes and come back in order, unpadded."""
    data = stun.encode_message(0x0003, TID, ((0x0019, b"\x11\0\0\0"), (0x0006, b"user1")))
    assert len(data) == 20 + 8 + 12 and len(data) % 4 == 0
    msg = stun.decode_message(data)
    assert msg is not None and msg.kind == 0x0003 and msg.transaction_id == TID
    assert msg.attributes == ((0x0019, b"\x11\0\0\0"), (0x0006, b"user1"))
    assert msg.attribute(0x0006) == b"user1" and msg.attribute(0x0008) is None


def test_stun_decode_rejects_non_stun() -> None:
    """Short datagrams, a wrong magic cookie and truncated bodies are not STUN."""
    good = stun.encode_message(stun.BINDING_SUCCESS, TID, ((0x0020, b"\0" * 8),))
    assert stun.decode_message(good[:19]) is None
    assert stun.decode_message(good[:4] + b"\0\0\0\0" + good[8:]) is None
    assert stun.decode_message(good[:-1]) is None


def test_stun_xor_mapped_address() -> None:
    """XOR-MAPPED-ADDRESS decodes to the address the server saw (RFC 5389 §15.2)."""
    port, ip = 40112, bytes([203, 0, 113, 5])
    xport = port ^ (stun.STUN_MAGIC >> 16)
    xip = bytes(b ^ m for b, m in zip(ip, stun.STUN_MAGIC.to_bytes(4, "big"), strict=True))
    value = b"\0\x01" + xport.to_bytes(2, "big") + xip
    data = stun.encode_message(stun.BINDING_SUCCESS, TID, ((stun.ATTR_XOR_MAPPED_ADDRESS, value),))
    assert stun.parse_stun_response(data, TID) == "203.0.113.5:40112"
    assert stun.parse_stun_response(data, bytes(12)) is None  # another transaction


def test_stun_error_response_is_typed() -> None:
    """A Binding error response raises StunErrorResponse with its code and reason."""
    data = stun.encode_message(
        stun.BINDING_ERROR, TID, ((stun.ATTR_ERROR_CODE, b"\0\0\x04\x01Unauthorized"),)
    )
    with pytest.raises(stun.StunErrorResponse) as info:
        stun.parse_stun_response(data, TID)
    assert info.value.code == 401 and info.value.reason == "Unauthorized"


def test_ice_url_scheme() -> None:
    """The full parse keeps the scheme, so a TURN check can tell TURN URLs from STUN ones."""
    url = stun.parse_ice_url_full("turns:turn.example.jp:443?transport=tcp")
    assert (url.host, url.port, url.transport, url.is_turn) == ("turn.example.jp", 443, "tls", True)
    assert not stun.parse_ice_url_full("stun:127.0.0.1").is_turn
    with pytest.raises(ValueError, match="port must be a number"):
        stun.parse_ice_url("stun:host:abc")


async def test_missing_camera_device_cause_through_the_kiosk_path() -> None:
    """A device node that does not exist reaches the doctor as NOT_FOUND through the kiosk's own VideoSource."""
    from kiosk.config import CameraConfig

    m = await cameras.measure_camera(CameraConfig("/dev/video97", 160, 120, 10.0), "camera", seconds=0.2)
    assert m.cause is CameraCause.NOT_FOUND and not m.is_file
    assert (
        "is not there: plug it in"
        in cameras.camera_result("camera", "camera", CameraConfig("/dev/video97", 160, 120, 10.0), m).advice
    )
