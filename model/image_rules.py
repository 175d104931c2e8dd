"""Image rules with the limits of SageMaker's image endpoints, checked from the headers first.

PNG or JPEG only (by content, not by extension), at most 4 MB, each side 64..4096 px, aspect ratio at
most 20:1, complete and decodable. Dimensions come from the PNG IHDR / JPEG SOF header before any pixel
is decoded, so a decompression bomb is refused for the cost of reading a few bytes.

Lives in ``model`` (pure numpy/cv2 and header parsing) so that catalog indexing and photo search
(``cloud_lambda.catalog.indexer``, the photo search) and fine-tuning data checks (``model.finetune``) share one set of
rules, and ``model`` imports nothing of the other packages.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

from model.contracts.errors import Rejected
from model.stderr_filter import LIBJPEG_WARNINGS, filtered_stderr

MAX_BYTES = 4 * 1024 * 1024
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_ASPECT = 20.0

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
# Recognized but refused: say what the file is rather than "not an image".
OTHER_FORMATS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"RIFF": "WEBP",
    b"\x00\x00\x00\x0cjP": "JPEG 2000",
}
# SOF markers carrying the frame size: C0..CF except DHT (C4), JPG (C8) and DAC (CC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])

REASONS = (
    "empty",
    "too_large",
    "unsupported_format",
    "not_image",
    "too_small",
    "too_big",
    "aspect_ratio",
    "truncated",
    "undecodable",
)


class ImageRejected(Rejected):
    """An image that breaks a rule; ``reason`` is one of :data:`REASONS`."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def sniff(data: bytes) -> ImageInfo:
    """Format and size from the header alone; raises :class:`ImageRejected` for everything but PNG/JPEG."""
    if not data:
        raise ImageRejected("empty", "file is empty")
    if len(data) > MAX_BYTES:
        raise ImageRejected("too_large", f"{len(data):,} bytes is over the {MAX_BYTES:,}-byte (4 MB) limit")
    if data.startswith(PNG_SIGNATURE):
        return _png_header(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_header(data)
    for magic, name in OTHER_FORMATS.items():
        if data.startswith(magic) and (name != "WEBP" or data[8:12] == b"WEBP"):
            raise ImageRejected("unsupported_format", f"{name} is not accepted: PNG or JPEG only")
    raise ImageRejected("not_image", "content is neither PNG nor JPEG (the extension does not count)")


def _png_header(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageRejected("truncated", "PNG ends before its IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return ImageInfo("png", int(width), int(height))


def _jpeg_header(data: bytes) -> ImageInfo:
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise ImageRejected("undecodable", f"JPEG marker expected at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker in STANDALONE_MARKERS:
            continue
        if pos + 2 > end:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if marker in SOF_MARKERS:
            if pos + 7 > end:
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return ImageInfo("jpeg", int(width), int(height))
        if marker == 0xDA:
            raise ImageRejected("undecodable", "JPEG scan starts before any frame header (SOF)")
        pos += length
    raise ImageRejected("truncated", "JPEG ends before its frame header (SOF)")


def frame_dimensions(data: bytes) -> ImageInfo:
    """Format and size of a camera frame file from its header: PNG, JPEG, BMP, TIFF or WebP (what a folder
    source reads). No size rule here: the caller decides what is too big before anything is decoded."""
    if data.startswith(PNG_SIGNATURE):
        return _png_header(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_header(data)
    if data.startswith(b"BM"):
        return _bmp_header(data)
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return _tiff_header(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return _webp_header(data)
    raise ImageRejected("not_image", "content is not PNG, JPEG, BMP, TIFF or WebP (the extension does not count)")


def _bmp_header(data: bytes) -> ImageInfo:
    if len(data) < 26:
        raise ImageRejected("truncated", "BMP ends before its header")
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return ImageInfo("bmp", abs(int(width)), abs(int(height)))  # negative height: rows stored top-down


def _tiff_header(data: bytes) -> ImageInfo:
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
        sizes: dict[int, int] = {}
        for n in range(count):
            tag, kind, _, value = struct.unpack(order + "HHII", data[ifd + 2 + 12 * n : ifd + 14 + 12 * n])
            if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (in the first two bytes) or LONG
                sizes[tag] = struct.unpack(order + "H", struct.pack(order + "I", value)[:2])[0] if kind == 3 else value
    except struct.error:
        raise ImageRejected("truncated", "TIFF ends before its first image directory") from None
    if 256 not in sizes or 257 not in sizes:
        raise ImageRejected("undecodable", "TIFF directory gives no ImageWidth/ImageLength")
    return ImageInfo("tiff", int(sizes[256]), int(sizes[257]))


def _webp_header(data: bytes) -> ImageInfo:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return ImageInfo("webp", width & 0x3FFF, height & 0x3FFF)
    if kind == b"VP8L" and len(data) >= 25:
        b0, b1, b2, b3 = data[21:25]
        return ImageInfo("webp", 1 + (((b1 & 0x3F) << 8) | b0), 1 + (((b3 & 0x0F) << 10) | (b2 << 2) | (b1 >> 6)))
    if kind == b"VP8X" and len(data) >= 30:
        return ImageInfo("webp", 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little"))
    raise ImageRejected("truncated", "WebP ends before its frame header")


def check_dimensions(info: ImageInfo) -> None:
    w, h = info.width, info.height
    problems = []
    if min(w, h) < MIN_SIDE:
        problems.append(("too_small", f"{w}×{h} px: each side must be at least {MIN_SIDE} px"))
    if max(w, h) > MAX_SIDE:
        problems.append(("too_big", f"{w}×{h} px: each side must be at most {MAX_SIDE} px"))
    if min(w, h) > 0 and max(w, h) / min(w, h) > MAX_ASPECT:
        problems.append(("aspect_ratio", f"aspect ratio {max(w, h) / min(w, h):.1f}:1 is over {MAX_ASPECT:.0f}:1"))
    if problems:
        raise ImageRejected(problems[0][0], "; ".join(text for _, text in problems))


def check_complete(data: bytes, info: ImageInfo) -> None:
    """Refuse files cut short: libjpeg/libpng would otherwise return a half-grey picture with a warning."""
    if info.format == "png":
        if data.rfind(b"IEND") < 0:
            raise ImageRejected("truncated", "PNG has no IEND chunk: the file is cut short")
    else:
        sos = data.find(b"\xff\xda")
        # Entropy-coded data stuffs 0xFF with 0x00, so an EOI after the first scan is the real end.
        if sos < 0 or data.rfind(b"\xff\xd9") < sos:
            raise ImageRejected("truncated", "JPEG has no end-of-image marker after its scan: the file is cut short")


def validate(data: bytes) -> ImageInfo:
    """All checks short of decoding."""
    info = sniff(data)
    check_dimensions(info)
    check_complete(data, info)
    return info


def jpeg_reduction(info: ImageInfo, min_side: int | None) -> int:
    """The largest libjpeg DCT scale-down (1, 2, 4, 8) that keeps the short side >= ``min_side``."""
    if info.format != "jpeg" or not min_side:
        return 1
    for factor in (8, 4, 2):
        if min(info.width, info.height) // factor >= min_side:
            return factor
    return 1


_REDUCED_FLAGS = {2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


def decode(data: bytes, min_side: int | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Validate then decode to BGR uint8; raises :class:`ImageRejected` with the reason.

    ``min_side``: a JPEG much larger than needed is decoded scaled down in the DCT domain (an anti-aliased
    reduction that skips most of the IDCT work; performance.md: decode costs as much as int8 inference),
    keeping its short side >= ``min_side``. The whole entropy-coded stream is still read, so a corrupt file
    is refused all the same.
    """
    import cv2

    info = validate(data)
    factor = jpeg_reduction(info, min_side)
    flag = getattr(cv2, _REDUCED_FLAGS[factor]) if factor > 1 else cv2.IMREAD_COLOR
    with filtered_stderr(LIBJPEG_WARNINGS):
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if image is None:
        raise ImageRejected("undecodable", f"{info.format.upper()} header is valid but the pixels do not decode")
    expected = sorted((-(-info.width // factor), -(-info.height // factor)))
    # EXIF orientation may swap the sides of a JPEG; anything else means the header lied.
    if sorted(image.shape[:2]) != expected:
        raise ImageRejected(
            "undecodable",
            f"decoded size {image.shape[1]}×{image.shape[0]} differs from the header's {info.width}×{info.height}",
        )
    if info.format == "jpeg" and _ends_in_flat_grey(image, factor) and _scan_is_short(data, image, flag):
        raise ImageRejected(
            "truncated",
            f"JPEG scan data ends before filling its declared {info.width}×{info.height} frame (the rest would be grey)",
        )
    return image, info


# No 0xFF byte (it would start a marker): decoded as entropy data only by a scan that is still short of MCUs.
_PROBE = bytes((i * 37 + 11) % 255 for i in range(509))


def _ends_in_flat_grey(image: np.ndarray, factor: int) -> bool:
    """The cheap half of the short-scan check: is the bottom-right corner one neutral grey?

    When libjpeg runs out of scan data it warns and leaves every remaining MCU at zero coefficients: flat
    grey (128 for YCbCr and grayscale) down to the bottom-right corner. The warning is not visible through
    OpenCV, so this look at the corner decides whether the exact check below is worth a second decode.
    Only the last pixels of the last row: chroma upsampling blends real colour into the first grey rows
    and columns of the missing part.
    """
    corner = image[-1, -max(1, 4 // factor) :]
    value = int(corner.flat[0])
    # Pure black and white are what product shots end in, and never libjpeg's fill (mid-grey, or darker for
    # CMYK): skipping them keeps the second decode off the common catalog image.
    return value not in (0, 255) and bool((corner == value).all())


def _scan_is_short(data: bytes, image: np.ndarray, flag: int) -> bool:
    """Decode again with probe bytes at the end of every scan: a complete scan ignores them (libjpeg skips
    bytes before the next marker once its MCUs are done); a short one decodes them as its missing MCUs.

    Every scan, not only the last: in a progressive file a reduced decode reads only the DC scan.
    """
    import cv2

    ends = _scan_ends(data)
    if not ends:
        return False
    pieces, start = [], 0
    for end in ends:
        pieces += [data[start:end], _PROBE]
        start = end
    pieces.append(data[start:])
    # libjpeg warns about the probe bytes after every complete scan ("extraneous bytes"): expected here.
    with filtered_stderr(LIBJPEG_WARNINGS):
        probed = cv2.imdecode(np.frombuffer(b"".join(pieces), dtype=np.uint8), flag)
    return probed is None or probed.shape != image.shape or not np.array_equal(probed, image)


# The marker that ends entropy-coded data: 0xFF followed by neither a stuffed 0x00, a restart marker, nor fill.
_SCAN_END = re.compile(rb"\xff+(?![\x00\xd0-\xd7])")


def _scan_ends(data: bytes) -> list[int]:
    """Offsets where each scan's entropy-coded data ends, walking the segments (not searching for bytes,
    which an EXIF thumbnail would fool)."""
    ends: list[int] = []
    pos, size = 2, len(data)
    while pos + 4 <= size and data[pos] == 0xFF:
        while pos < size and data[pos] == 0xFF:
            pos += 1
        if pos + 3 > size:
            break
        marker = data[pos]
        if marker == 0xD9:
            break
        if marker in STANDALONE_MARKERS:
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 1 : pos + 3])
        pos += 1 + length
        if marker == 0xDA:
            found = _SCAN_END.search(data, pos)
            if found is None:
                break
            ends.append(found.start())
            pos = found.start()
    return ends
