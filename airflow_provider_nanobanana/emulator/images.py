"""Real, decodable PNG and JPEG bytes for emulated results, built with the stdlib only.

Downstream code (operators that download and store results) must be exercised with genuine image
files, not placeholders, yet the project may not depend on an imaging library. PNG is trivial with
zlib; JPEG uses a tiny baseline encoder whose 8x8 blocks are flat (DC-only), which every decoder reads.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

__all__ = ["image_size", "render_image", "render_jpeg", "render_png"]

LONG_SIDE = 512
"""Long side of emulated images: big enough to look like a result, small enough to stay cheap."""

Rgb = tuple[int, int, int]


def image_size(aspect_ratio: str | None, long_side: int = LONG_SIDE) -> tuple[int, int]:
    """Width and height for an aspect ratio like ``16:9``; ``auto`` or anything unparsable is square."""
    try:
        w_part, h_part = (aspect_ratio or "").split(":")
        ratio_w, ratio_h = int(w_part), int(h_part)
    except ValueError:
        return long_side, long_side
    if ratio_w <= 0 or ratio_h <= 0:
        return long_side, long_side
    if ratio_w >= ratio_h:
        return long_side, max(1, round(long_side * ratio_h / ratio_w))
    return max(1, round(long_side * ratio_w / ratio_h)), long_side


def _palette(seed: str) -> tuple[Rgb, Rgb]:
    """Two colours derived from the seed, so each task gets its own recognisable image."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5])


def _lerp(start: Rgb, end: Rgb, t: float) -> Rgb:
    """Linear blend of two colours, t in [0, 1]."""
    r = round(start[0] + (end[0] - start[0]) * t)
    g = round(start[1] + (end[1] - start[1]) * t)
    b = round(start[2] + (end[2] - start[2]) * t)
    return r, g, b


def _gradient_strip(length: int, seed: str) -> list[Rgb]:
    """A one-dimensional colour ramp; a diagonal gradient is a sliding window over it."""
    start, end = _palette(seed)
    span = max(1, length - 1)
    return [_lerp(start, end, i / span) for i in range(length)]


# --- PNG -------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One length-prefixed, CRC-suffixed PNG chunk."""
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def render_png(width: int, height: int, seed: str) -> bytes:
    """A truecolour PNG with a diagonal gradient whose colours come from the seed."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    strip = bytes(channel for rgb in _gradient_strip(width + height - 1, seed) for channel in rgb)
    raw = b"".join(b"\x00" + strip[3 * y : 3 * (y + width)] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


# --- JPEG (baseline, DC-only) ---------------------------------------------------------------------

# ITU-T T.81 Annex K.3, table K.3: the standard luminance DC Huffman table (categories 0..11).
_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
_DC_VALUES = tuple(range(12))
# Every block's AC coefficients are zero, so the AC table only needs the end-of-block symbol.
_AC_BITS = (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_AC_VALUES = (0x00,)
# With every quantiser 8, a flat block of level-shifted value s has quantised DC exactly s.
_QUANT = 8


def _huffman_codes(bits: tuple[int, ...], values: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Canonical Huffman codes (symbol -> (code, length)) from a DHT bits/values pair."""
    codes: dict[int, tuple[int, int]] = {}
    code, index = 0, 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[values[index]] = (code, length)
            code += 1
            index += 1
        code <<= 1
    return codes


_DC_CODES = _huffman_codes(_DC_BITS, _DC_VALUES)
_EOB = _huffman_codes(_AC_BITS, _AC_VALUES)[0x00]


class _BitWriter:
    """MSB-first bit packer with JPEG byte stuffing (0xFF is followed by 0x00)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self._acc = 0
        self._count = 0

    def write(self, value: int, length: int) -> None:
        self._acc = (self._acc << length) | (value & ((1 << length) - 1))
        self._count += length
        while self._count >= 8:
            self._count -= 8
            byte = (self._acc >> self._count) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)
        self._acc &= (1 << self._count) - 1

    def flush(self) -> bytes:
        """Pad the last byte with one-bits, as the standard asks."""
        if self._count:
            self.write((1 << (8 - self._count)) - 1, 8 - self._count)
        return bytes(self.out)


def _encode_dc(writer: _BitWriter, diff: int) -> None:
    """Write one DC difference (category code plus magnitude bits) and the block's end-of-block."""
    category = abs(diff).bit_length()
    code, length = _DC_CODES[category]
    writer.write(code, length)
    if category:
        writer.write(diff if diff >= 0 else diff + (1 << category) - 1, category)
    writer.write(*_EOB)


def _to_ycbcr(rgb: Rgb) -> tuple[int, int, int]:
    """JFIF colour conversion, level-shifted by -128 and clamped to the 8-bit range."""
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return _shift(y), _shift(cb), _shift(cr)


def _shift(value: float) -> int:
    """Round, level-shift by -128 and clamp to a signed 8-bit sample."""
    return min(127, max(-128, round(value) - 128))


def _marker(code: int, payload: bytes) -> bytes:
    """A marker segment: 0xFF, code, 16-bit length (which counts itself), payload."""
    return bytes((0xFF, code)) + struct.pack(">H", len(payload) + 2) + payload


def _dht(table_class: int, table_id: int, bits: tuple[int, ...], values: tuple[int, ...]) -> bytes:
    """Payload of one Huffman table definition."""
    return bytes(((table_class << 4) | table_id, *bits, *values))


def _jpeg_headers(width: int, height: int) -> bytes:
    """SOI through SOS for a 3-component, 1x1-sampled baseline JPEG."""
    jfif = b"JFIF\x00" + bytes((1, 1, 0)) + struct.pack(">HH", 1, 1) + bytes((0, 0))
    dqt = bytes((0,)) + bytes((_QUANT,)) * 64
    sof = bytes((8,)) + struct.pack(">HH", height, width) + bytes((3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0))
    dht = _dht(0, 0, _DC_BITS, _DC_VALUES) + _dht(1, 0, _AC_BITS, _AC_VALUES)
    sos = bytes((3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0))
    return (
        b"\xff\xd8"
        + _marker(0xE0, jfif)
        + _marker(0xDB, dqt)
        + _marker(0xC0, sof)
        + _marker(0xC4, dht)
        + _marker(0xDA, sos)
    )


def render_jpeg(width: int, height: int, seed: str) -> bytes:
    """A baseline JPEG of flat 8x8 blocks following a diagonal gradient whose colours come from the seed."""
    if width <= 0 or height <= 0 or width > 65535 or height > 65535:
        raise ValueError("width and height must be between 1 and 65535")
    cols, rows = -(-width // 8), -(-height // 8)
    strip = [_to_ycbcr(rgb) for rgb in _gradient_strip(cols + rows - 1, seed)]
    writer = _BitWriter()
    previous = [0, 0, 0]
    for row in range(rows):
        for col in range(cols):
            for component, value in enumerate(strip[row + col]):
                _encode_dc(writer, value - previous[component])
                previous[component] = value
    return _jpeg_headers(width, height) + writer.flush() + b"\xff\xd9"


@lru_cache(maxsize=64)
def render_image(output_format: str, width: int, height: int, seed: str) -> bytes:
    """PNG or JPEG bytes by format name (``png``, ``jpeg``/``jpg``), cached: downloads repeat."""
    if output_format == "png":
        return render_png(width, height, seed)
    if output_format in ("jpeg", "jpg"):
        return render_jpeg(width, height, seed)
    raise ValueError(f"unsupported output format: {output_format}")
