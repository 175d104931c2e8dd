"""Image validation from headers: formats by content, sizes, aspect, truncation, decompression bombs."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from cloud_lambda.catalog.validate import ImageRejected, decode, sniff, validate


def png(w: int, h: int) -> bytes:
    return cv2.imencode(".png", np.full((h, w, 3), 100, np.uint8))[1].tobytes()


def jpeg(w: int, h: int, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    rng = np.random.default_rng(0)
    return cv2.imencode(".jpg", rng.integers(0, 255, (h, w, 3), dtype=np.uint8), params)[1].tobytes()


def reason(data: bytes) -> str:
    with pytest.raises(ImageRejected) as info:
        decode(data)
    assert str(info.value)
    return info.value.reason


def test_good_images_decode_with_header_sizes():
    for data, fmt in ((png(300, 200), "png"), (jpeg(320, 240), "jpeg"), (jpeg(640, 64, progressive=True), "jpeg")):
        image, info = decode(data)
        assert info.format == fmt and image.shape[:2] == (info.height, info.width)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"GIF89a" + b"\0" * 100, "unsupported_format"),
        (b"BM" + b"\0" * 100, "unsupported_format"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "unsupported_format"),
        (b"hello, I am text", "not_image"),
        (png(40, 40), "too_small"),
        (png(63, 500), "too_small"),
        (png(5000, 100), "too_big"),
        (png(1300, 64), "aspect_ratio"),
        (jpeg(320, 240)[:-600], "truncated"),
        (png(200, 200)[:-20], "truncated"),
        (b"\x89PNG\r\n\x1a\n\0\0", "truncated"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "truncated"),
    ],
)
def test_rejections(data: bytes, expected: str):
    assert reason(data) == expected


def test_over_4mb_is_refused_before_parsing():
    assert reason(b"\xff\xd8\xff" + b"\0" * (4 * 1024 * 1024)) == "too_large"


def test_decompression_bomb_refused_from_header_alone():
    # A valid PNG header claiming 60000×60000 with a tiny body: refused without allocating 10 GB.
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = b"\x89PNG\r\n\x1a\n" + chunk + b"\0\0\0\0IEND\xaeB`\x82"
    assert sniff(data).width == 60000
    with pytest.raises(ImageRejected) as info:
        validate(data)
    assert info.value.reason == "too_big"


def test_header_lies_about_size():
    data = bytearray(png(100, 100))
    data[16:24] = struct.pack(">II", 120, 100)  # IHDR says 120 wide: the CRC no longer matches either
    assert reason(bytes(data)) == "undecodable"


def test_reduced_jpeg_decode_keeps_min_side_and_still_catches_truncation():
    data = jpeg(1200, 800)
    image, _ = decode(data, min_side=224)
    assert image.shape[:2] == (200 * 2, 300 * 2)  # factor 2: 400 >= 224, factor 4 would give 200
    image, _ = decode(data, min_side=64)
    assert image.shape[:2] == (100, 150)  # factor 8
    assert decode(png(1200, 800), min_side=64)[0].shape[:2] == (800, 1200)  # PNG has no DCT reduction
    with pytest.raises(ImageRejected) as info_err:
        decode(data[: len(data) // 2], min_side=64)
    assert info_err.value.reason == "truncated"
