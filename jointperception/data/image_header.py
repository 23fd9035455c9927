"""The size an encoded image declares, read from its header without decoding (docs/input_bounds.md).

A few bytes can declare a 60000x60000 image and make a decoder allocate gigabytes, so every
frame, mask and compressed message is checked here before OpenCV decodes it: ``check_declared_size``
refuses a header that declares more than ``max_pixels`` (default MAX_PIXELS, the node's
``max_pixels`` parameter) and data whose format is not one of HEADER_FORMATS, the formats
OpenCV decodes.
"""
from __future__ import annotations

import re
import struct
from collections.abc import Callable

from jointperception.data.image_msg import CORRUPT_DATA, OVERSIZED, ImageConversionError

MAX_PIXELS = 100_000_000  # beyond any camera frame (8K is 33 Mpx)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15, not DHT / JPG / DAC
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n)*(\S+)")  # a header token after whitespace and comments
Size = tuple[int, int]


def _png(data: bytes) -> Size | None:
    return struct.unpack(">II", data[16:24]) if data[12:16] == b"IHDR" and len(data) >= 24 else None


def _jpeg(data: bytes) -> Size | None:
    """The first SOF segment's size."""
    offset = 2
    while offset + 9 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker in _JPEG_FRAME_MARKERS:
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        offset += 2 + struct.unpack(">H", data[offset + 2 : offset + 4])[0]
    return None


def _bmp(data: bytes) -> Size | None:
    if len(data) < 26:
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _tiff(data: bytes) -> Size | None:
    """Tags ImageWidth (256) and ImageLength (257) of the first IFD (classic or BigTIFF)."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    head, entry, count_format, offset_format = (16, 20, "Q", "Q") if big else (8, 12, "H", "I")
    if len(data) < head:
        return None
    ifd = struct.unpack(order + offset_format, data[head - struct.calcsize(offset_format) : head])[0]
    count_size = struct.calcsize(count_format)
    if ifd + count_size > len(data):
        return None
    count = struct.unpack(order + count_format, data[ifd : ifd + count_size])[0]
    found: dict[int, int] = {}
    for start in range(ifd + count_size, min(ifd + count_size + count * entry, len(data) - entry + 1), entry):
        tag, kind = struct.unpack(order + "HH", data[start : start + 4])
        if tag in (256, 257):
            value_format = order + ("H" if kind == 3 else "I")  # SHORT or LONG
            value_at = start + (12 if big else 8)
            found[tag] = struct.unpack_from(value_format, data, value_at)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _webp(data: bytes) -> Size | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _pnm(data: bytes) -> Size | None:
    """P1..P6 and PFM (``Pf`` / ``PF``): magic, width, height as text tokens; P7 (PAM): WIDTH / HEIGHT lines."""
    header = data[:4096]
    if header[:2] == b"P7":
        fields = dict(re.findall(rb"^(WIDTH|HEIGHT)\s+(\d+)", header, re.MULTILINE))
        return (int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])) if len(fields) == 2 else None
    tokens, position = [], 2
    while len(tokens) < 2 and (match := _PNM_TOKEN.match(header, position)):
        tokens.append(match.group(1))
        position = match.end()
    return (int(tokens[0]), int(tokens[1])) if len(tokens) == 2 and all(t.isdigit() for t in tokens) else None


def _sun_raster(data: bytes) -> Size | None:
    return struct.unpack(">II", data[4:12]) if len(data) >= 12 else None


def _radiance(data: bytes) -> Size | None:
    """The resolution line after the header's empty line, e.g. ``-Y 480 +X 640``."""
    match = re.search(rb"\n\n[-+]Y (\d+) [-+]X (\d+)", data[:65536])
    return (int(match.group(2)), int(match.group(1))) if match else None


def _gif(data: bytes) -> Size | None:
    return struct.unpack("<HH", data[6:10]) if len(data) >= 10 else None


def _jpeg2000(data: bytes) -> Size | None:
    """The JP2 ``ihdr`` box (height, width) or the codestream's SIZ marker (extent minus offset)."""
    if data.startswith(_JP2_SIGNATURE):
        at = data.find(b"ihdr", 0, 65536)
        if at < 0 or at + 12 > len(data):
            return None
        height, width = struct.unpack(">II", data[at + 4 : at + 12])
        return width, height
    if len(data) < 24:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[8:24])
    return max(xsiz - xosiz, 0), max(ysiz - yosiz, 0)


def _exr(data: bytes) -> Size | None:
    """The ``dataWindow`` attribute (box2i: xmin, ymin, xmax, ymax) of an OpenEXR header."""
    offset = 8
    while offset < min(len(data), 65536) and data[offset] != 0:
        name_end = data.find(b"\x00", offset)
        type_end = data.find(b"\x00", name_end + 1)
        if name_end < 0 or type_end < 0 or type_end + 5 > len(data):
            return None
        size = struct.unpack("<I", data[type_end + 1 : type_end + 5])[0]
        value = data[type_end + 5 : type_end + 5 + size]
        if data[offset:name_end] == b"dataWindow" and len(value) == 16:
            xmin, ymin, xmax, ymax = struct.unpack("<iiii", value)
            return max(xmax - xmin + 1, 0), max(ymax - ymin + 1, 0)
        offset = type_end + 5 + size
    return None


def _avif(data: bytes) -> Size | None:
    """The first ``ispe`` (image spatial extents) property of an AVIF / HEIF file."""
    at = data.find(b"ispe", 0, 65536)
    return struct.unpack(">II", data[at + 8 : at + 16]) if 0 <= at and at + 16 <= len(data) else None


# format name -> (does the data start like it, its size reader)
HEADER_FORMATS: dict[str, tuple[Callable[[bytes], bool], Callable[[bytes], Size | None]]] = {
    "png": (lambda d: d.startswith(_PNG_SIGNATURE), _png),
    "jpeg": (lambda d: d.startswith(b"\xff\xd8"), _jpeg),
    "bmp": (lambda d: d.startswith(b"BM"), _bmp),
    "tiff": (lambda d: d[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    "webp": (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", _webp),
    "pnm": (lambda d: len(d) > 2 and d[:1] == b"P" and d[1:2] in b"1234567fF" and d[2:3].isspace(), _pnm),
    "sun raster": (lambda d: d.startswith(b"\x59\xa6\x6a\x95"), _sun_raster),
    "radiance hdr": (lambda d: d.startswith((b"#?RADIANCE", b"#?RGBE")), _radiance),
    "gif": (lambda d: d.startswith((b"GIF87a", b"GIF89a")), _gif),
    "jpeg 2000": (lambda d: d.startswith((_JP2_SIGNATURE, b"\xff\x4f\xff\x51")), _jpeg2000),
    "openexr": (lambda d: d.startswith(b"\x76\x2f\x31\x01"), _exr),
    "avif": (lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"avif", b"avis", b"heic", b"mif1"), _avif),
}


def image_format(data: bytes) -> str | None:
    """The key of HEADER_FORMATS whose signature ``data`` starts with, None for none."""
    return next((name for name, (matches, _) in HEADER_FORMATS.items() if matches(data)), None)


def declared_size(data: bytes) -> Size | None:
    """(width, height) the header of encoded image ``data`` declares; None for data of no known
    format or a header too short to read. Reads the header only."""
    name = image_format(data)
    if name is None:
        return None
    try:
        return HEADER_FORMATS[name][1](data)
    except (struct.error, ValueError):  # a header cut short inside a field
        return None


def check_declared_size(data: bytes, max_pixels: int = MAX_PIXELS) -> Size:
    """(width, height) of encoded image ``data`` when its header declares at most ``max_pixels``;
    raises ImageConversionError OVERSIZED above it, CORRUPT_DATA for data of no known format or an
    unreadable header."""
    size = declared_size(data)
    if size is None:
        name = image_format(data)
        what = f"its {name} header cannot be read" if name else (
            f"not an image of a known format ({', '.join(HEADER_FORMATS)})" if data else "no data")
        raise ImageConversionError(CORRUPT_DATA, f"{len(data)} bytes: {what}")
    if size[0] * size[1] > max_pixels:
        raise ImageConversionError(OVERSIZED, f"header declares {size[0]}x{size[1]} pixels, more than the "
                                              f"{max_pixels} allowed (max_pixels)")
    return size
