"""Full-resolution document stills over a WebRTC data channel: framing, PNG coding, verification.

The video track of the document camera is lossy (VP8/H264 at a few hundred kbit/s). When staff need
to read fine print they ask for a still: the kiosk grabs the document source's latest full-resolution
frame and sends it **losslessly** as PNG over the call's data channel, and the station checks that it
received exactly the pixels that were captured.

Wire format on the data channel (label :data:`CONTROL_CHANNEL`, reliable and ordered), all text
messages JSON:

* staff → kiosk: ``{"still": "request", "id": ID}``
* kiosk → staff: ``{"still": "begin", "id": ID, "format": "png", "width": W, "height": H,
  "bytes": N, "sha256": HEX_OF_PNG, "pixels_sha256": HEX_OF_RGB, "chunks": K, "captured_ms": T}``,
  then ``K`` binary messages of at most :data:`CHUNK_BYTES` bytes (the PNG file in order), then
  ``{"still": "end", "id": ID}``;
* or kiosk → staff: ``{"still": "error", "id": ID, "message": TEXT}`` (no document camera, no frame yet).

``pixels_sha256`` is the SHA-256 of the captured frame as a C-contiguous ``H×W×3`` uint8 RGB array: the
station decodes the PNG and checks that hash, so "bit-identical to the capture" is verified end to
end, not just "the file arrived".

This module is pure apart from the PNG codec (OpenCV); the session moves the messages.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

__all__ = [
    "CHUNK_BYTES",
    "CONTROL_CHANNEL",
    "Still",
    "StillAssembler",
    "StillError",
    "decode_png",
    "encode_png",
    "frame_messages",
    "pixels_sha256",
    "verify",
]

CONTROL_CHANNEL = "kiosk-control"
CHUNK_BYTES = 16 * 1024  # well under aiortc's 64 KiB SCTP message limit


class StillError(Exception):
    """A still that could not be produced, transferred or verified (the message says which step)."""


@dataclass
class Still:
    """A verified full-resolution document still, held in memory only.

    Attributes:
        id: request id.
        member: terminal id of the kiosk that captured it.
        rgb: ``H×W×3`` uint8 RGB pixels, exactly as captured.
        png: the PNG file as received.
        sha256: SHA-256 of ``png``.
        captured_ms: wall-clock capture time on the kiosk (ms since the epoch).
        received_at: ``time.monotonic()`` when verification finished.
    """

    id: str
    member: str
    rgb: np.ndarray
    png: bytes
    sha256: str
    captured_ms: int
    received_at: float = field(default_factory=time.monotonic)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def wipe(self) -> None:
        """Overwrite the pixels and drop the file, so nothing of the document stays in memory."""
        self.rgb.fill(0)
        self.png = b""


def pixels_sha256(rgb: np.ndarray) -> str:
    """SHA-256 of an RGB frame's bytes in C order (the identity a still is checked against)."""
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise StillError(f"a still must be an H×W×3 uint8 RGB frame, got shape {rgb.shape} dtype {rgb.dtype}")


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an RGB frame as PNG (lossless). Blocking: run it in an executor for big frames."""
    _check_rgb(rgb)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise StillError(f"PNG encoding of a {rgb.shape[1]}×{rgb.shape[0]} frame failed")
    return bytes(buf.tobytes())


def decode_png(data: bytes) -> np.ndarray:
    """Decode a PNG file to an RGB frame. Blocking: run it in an executor for big frames."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise StillError(f"received still ({len(data)} bytes) is not a decodable PNG")
    return np.ascontiguousarray(cv2.cvtColor(arr, cv2.COLOR_BGR2RGB))


def frame_messages(still_id: str, rgb: np.ndarray, png: bytes, captured_ms: int) -> list[str | bytes]:
    """The data-channel messages that carry one still: begin header, binary chunks, end."""
    chunks = [png[i : i + CHUNK_BYTES] for i in range(0, len(png), CHUNK_BYTES)]
    header = {
        "still": "begin",
        "id": still_id,
        "format": "png",
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "bytes": len(png),
        "sha256": hashlib.sha256(png).hexdigest(),
        "pixels_sha256": pixels_sha256(rgb),
        "chunks": len(chunks),
        "captured_ms": int(captured_ms),
    }
    out: list[str | bytes] = [json.dumps(header)]
    out += chunks
    out.append(json.dumps({"still": "end", "id": still_id}))
    return out


@dataclass
class _Pending:
    header: dict[str, Any]
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


class StillAssembler:
    """Reassembles stills from data-channel messages (pure: feed messages, get complete files).

    :meth:`feed` returns ``None`` while a transfer is in progress, and ``(header, png)`` when the
    ``end`` message arrives and size and SHA-256 of the file match the header. Pixel verification
    (decode + ``pixels_sha256``) is :func:`verify` — separate because decoding is slow.
    """

    def __init__(self) -> None:
        self._pending: _Pending | None = None

    def reset(self) -> None:
        """Drop any partial transfer (call end)."""
        self._pending = None

    def feed(self, message: str | bytes | dict[str, Any]) -> tuple[dict[str, Any], bytes] | None:
        """Feed one message (a parsed text message or a binary chunk).

        Raises:
            StillError: a chunk without a header, a size or hash mismatch, an ``error`` from the kiosk.
        """
        if isinstance(message, bytes | bytearray | memoryview):
            if self._pending is None:
                raise StillError("still chunk received without a 'begin' header")
            chunk = bytes(message)
            self._pending.parts.append(chunk)
            self._pending.size += len(chunk)
            if self._pending.size > int(self._pending.header["bytes"]):
                sid = self._pending.header["id"]
                self._pending = None
                raise StillError(f"still {sid}: more data than the announced size")
            return None
        msg = json.loads(message) if isinstance(message, str) else message
        kind = msg.get("still")
        if kind == "begin":
            for key, typ in (
                ("id", str),
                ("width", int),
                ("height", int),
                ("bytes", int),
                ("sha256", str),
                ("pixels_sha256", str),
                ("chunks", int),
            ):
                if not isinstance(msg.get(key), typ):
                    raise StillError(
                        f"still 'begin' header needs '{key}' ({typ.__name__}), got {msg.get(key)!r}"
                    )
            if msg.get("format") != "png":
                raise StillError(f"still format must be 'png', got {msg.get('format')!r}")
            self._pending = _Pending(dict(msg))
            return None
        if kind == "end":
            pending, self._pending = self._pending, None
            if pending is None or pending.header["id"] != msg.get("id"):
                raise StillError(f"still 'end' for {msg.get('id')!r} without its 'begin'")
            h = pending.header
            data = b"".join(pending.parts)
            if len(data) != h["bytes"] or len(pending.parts) != h["chunks"]:
                raise StillError(
                    f"still {h['id']}: received {len(data)} bytes in {len(pending.parts)} chunks, "
                    f"announced {h['bytes']} bytes in {h['chunks']} chunks"
                )
            digest = hashlib.sha256(data).hexdigest()
            if digest != h["sha256"]:
                raise StillError(
                    f"still {h['id']}: SHA-256 {digest} does not match the announced {h['sha256']}"
                )
            return h, data
        if kind == "error":
            self._pending = None
            raise StillError(f"kiosk could not send still {msg.get('id')!r}: {msg.get('message')}")
        raise StillError(f"unexpected still message {msg!r}")


def verify(header: dict[str, Any], png: bytes, member: str) -> Still:
    """Decode a reassembled PNG and check size and pixel hash against the header. Blocking (executor).

    Raises:
        StillError: wrong dimensions or pixels that differ from the capture.
    """
    rgb = decode_png(png)
    if rgb.shape[1] != header["width"] or rgb.shape[0] != header["height"]:
        raise StillError(
            f"still {header['id']}: decoded {rgb.shape[1]}×{rgb.shape[0]}, "
            f"announced {header['width']}×{header['height']}"
        )
    if pixels_sha256(rgb) != header["pixels_sha256"]:
        raise StillError(f"still {header['id']}: decoded pixels differ from the captured frame")
    return Still(
        id=header["id"],
        member=member,
        rgb=rgb,
        png=png,
        sha256=header["sha256"],
        captured_ms=int(header.get("captured_ms", 0)),
    )
