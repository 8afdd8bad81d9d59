"""Machine-readable frame stamp: a frame counter and a capture time drawn into the picture.

The stamp is a grid of black and white blocks in the top-left corner of a frame, 4 rows of 24
columns. In every row the first column is always white and the last always black: they calibrate the
threshold (a codec changes contrast and brightness) and show that the grid is where we expect it.
The 22 other columns of the 4 rows carry 88 bits, most significant bit first::

    counter (32 bits) | capture time in ms since the Unix epoch, low 48 bits | CRC-8 (poly 0x07)

The block size follows from the frame width alone (``width // 24`` pixels, clamped to 4..16), so
the receiving side needs no side channel. A camera track that :mod:`kiosk.video.adapt` sends smaller
(one of :data:`SENT_SCALES`) carries the blocks smaller too (12 or 8 px for a 1280-wide camera): the
reader tries the block the frame's width implies, then the blocks of those scales. Few guesses keep
CRC-8 collisions on unreadable frames rare; a consumer that needs certainty checks plausibility too.
Blocks of 8 px and more survive VP8 at the bitrates aiortc uses; the CRC rejects frames where they did not.

Pure numpy: used by the synthetic camera, by the receiving side and by the benchmarks.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "SENT_SCALES",
    "STAMP_COLUMNS",
    "STAMP_ROWS",
    "draw_frame_stamp",
    "read_frame_stamp",
    "stamp_block_size",
]

STAMP_ROWS = 4
SENT_SCALES = (1.0, 0.75, 0.5)  # sizes a camera track is sent at, of its captured size (kiosk.video.adapt)
STAMP_COLUMNS = 24
_DATA_COLUMNS = STAMP_COLUMNS - 2
_COUNTER_BITS = 32
_TIME_BITS = 48
_CRC_BITS = 8
_MIN_BLOCK = 4
_MAX_BLOCK = 16
_MIN_CONTRAST = 64.0  # grey levels between the white and the black marker of a row

assert STAMP_ROWS * _DATA_COLUMNS == _COUNTER_BITS + _TIME_BITS + _CRC_BITS


def stamp_block_size(width: int, height: int) -> int | None:
    """Side in pixels of one stamp block for a frame of this size, or None if the frame is too small."""
    block = min(_MAX_BLOCK, width // STAMP_COLUMNS)
    if block < _MIN_BLOCK or height < STAMP_ROWS * block:
        return None
    return block


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _payload_bits(counter: int, capture_time_ms: int) -> npt.NDArray[np.uint8]:
    counter &= (1 << _COUNTER_BITS) - 1
    capture_time_ms &= (1 << _TIME_BITS) - 1
    value = (counter << _TIME_BITS) | capture_time_ms
    body = value.to_bytes((_COUNTER_BITS + _TIME_BITS) // 8, "big")
    data = body + bytes([_crc8(body)])
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def draw_frame_stamp(rgb: npt.NDArray[np.uint8], counter: int, capture_time_ms: int) -> None:
    """Draw the stamp into ``rgb`` (height × width × 3, uint8) in place.

    Args:
        rgb: the frame; modified in place.
        counter: frame counter; only the low 32 bits are kept.
        capture_time_ms: capture time in ms since the Unix epoch; only the low 48 bits are kept.

    Raises:
        ValueError: the frame is not an RGB uint8 array or is too small to carry a stamp
            (narrower than 96 px).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"frame stamp: expected a height×width×3 uint8 array, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    block = stamp_block_size(width, height)
    if block is None:
        raise ValueError(
            f"frame stamp: a {width}×{height} frame is too small "
            f"(needs at least {STAMP_COLUMNS * _MIN_BLOCK} px wide)"
        )
    grid = np.zeros((STAMP_ROWS, STAMP_COLUMNS), dtype=np.uint8)
    grid[:, 0] = 1
    grid[:, 1:-1] = _payload_bits(counter, capture_time_ms).reshape(STAMP_ROWS, _DATA_COLUMNS)
    pixels = np.kron(grid, np.ones((block, block), dtype=np.uint8)) * 255
    rgb[: STAMP_ROWS * block, : STAMP_COLUMNS * block, :] = pixels[:, :, None]


def read_frame_stamp(rgb: npt.NDArray[np.uint8]) -> tuple[int, int] | None:
    """Decode the stamp of a frame.

    Args:
        rgb: the frame as a height × width × 3 array (RGB or BGR: only brightness is used).

    Returns:
        ``(counter, capture_time_ms)`` (the time is the low 48 bits of ms since the Unix epoch,
        which is the full value until the year 10889), or None if the frame carries no readable stamp
        (too small, markers missing or too faint, or checksum mismatch).
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return None
    height, width = rgb.shape[:2]
    first = stamp_block_size(width, height)
    if first is None:
        return None
    tried = []
    for scale in SENT_SCALES:
        drawn = stamp_block_size(round(width / scale), round(height / scale))
        if drawn is None or (drawn * scale) % 1:
            continue
        block = int(drawn * scale)
        if block in tried or block < _MIN_BLOCK:
            continue
        tried.append(block)
        found = _read_blocks(rgb, block)
        if found is not None:
            return found
    return None


def _read_blocks(rgb: npt.NDArray[np.uint8], block: int) -> tuple[int, int] | None:
    band = rgb[: STAMP_ROWS * block, : STAMP_COLUMNS * block, :3].astype(np.float32).mean(axis=2)
    cells = band.reshape(STAMP_ROWS, block, STAMP_COLUMNS, block)
    # The centre half of each block: edges are where the codec smears neighbouring blocks together.
    lo, hi = block // 4, block - block // 4
    levels = cells[:, lo:hi, :, lo:hi].mean(axis=(1, 3))
    white, black = levels[:, 0], levels[:, -1]
    if np.any(white - black < _MIN_CONTRAST):
        return None
    threshold = ((white + black) / 2.0)[:, None]
    bits = (levels[:, 1:-1] > threshold).astype(np.uint8).reshape(-1)
    data = np.packbits(bits).tobytes()
    body, crc = data[:-1], data[-1]
    if _crc8(body) != crc:
        return None
    value = int.from_bytes(body, "big")
    return value >> _TIME_BITS, value & ((1 << _TIME_BITS) - 1)
