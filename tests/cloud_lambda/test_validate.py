"""Image validation from headers: formats by content, sizes, aspect, truncation, decompression bombs."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from model.image_rules import ImageRejected, decode, sniff, validate


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


def with_frame_size(data: bytes, width: int, height: int) -> bytes:
    """The same file with its SOF header declaring ``width``×``height``: the scan data no longer fills it."""
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


def flat_bottom(w: int, h: int, grey: int = 128) -> np.ndarray:
    rng = np.random.default_rng(1)
    image = cv2.resize(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    image[h // 2 :] = grey  # exactly what libjpeg fills a short scan with: must not look truncated
    return image


def cmyk(w: int, h: int) -> bytes:
    from io import BytesIO

    pil = pytest.importorskip("PIL.Image")
    out = BytesIO()
    pil.fromarray(flat_bottom(w, h, 90)[:, :, ::-1]).convert("CMYK").save(out, "JPEG")
    return out.getvalue()


@pytest.mark.parametrize("min_side", [None, 64])
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(with_frame_size(jpeg(320, 240), 640, 480), id="baseline"),
        pytest.param(with_frame_size(jpeg(320, 240), 320, 248), id="one-mcu-row-short"),
        pytest.param(with_frame_size(jpeg(320, 240), 336, 240), id="ends-in-the-last-mcu-row"),
        pytest.param(with_frame_size(jpeg(320, 240, progressive=True), 1200, 900), id="progressive"),
        pytest.param(
            with_frame_size(cv2.imencode(".jpg", flat_bottom(200, 150)[:, :, 0])[1].tobytes(), 400, 300),
            id="grayscale",
        ),
        pytest.param(with_frame_size(cmyk(200, 150), 400, 300), id="cmyk"),
    ],
)
def test_jpeg_whose_scan_data_does_not_fill_the_frame_is_truncated(data: bytes, min_side: int | None):
    # The file is complete (it ends with EOI) and decodes, with only a libjpeg warning, to a grey tail.
    assert data.endswith(b"\xff\xd9") and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    with pytest.raises(ImageRejected) as info:
        decode(data, min_side=min_side)
    assert info.value.reason == "truncated" and "declared" in str(info.value)


@pytest.mark.parametrize("min_side", [None, 64])
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(cv2.imencode(".jpg", flat_bottom(256, 192))[1].tobytes(), id="grey-bottom"),
        pytest.param(
            cv2.imencode(".jpg", flat_bottom(256, 192), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
            id="grey-bottom-progressive",
        ),
        pytest.param(
            cv2.imencode(".jpg", flat_bottom(256, 192), [cv2.IMWRITE_JPEG_RST_INTERVAL, 3])[1].tobytes(),
            id="grey-bottom-restart-markers",
        ),
        pytest.param(cv2.imencode(".jpg", np.full((100, 100), 128, np.uint8))[1].tobytes(), id="all-grey"),
        pytest.param(cmyk(200, 150), id="cmyk-flat-bottom"),
    ],
)
def test_complete_jpeg_ending_in_flat_grey_is_accepted(data: bytes, min_side: int | None):
    image, info = decode(data, min_side=min_side)
    assert image.ndim == 3 and info.format == "jpeg"


def test_white_background_jpeg_is_not_decoded_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # Product shots end in white: the short-scan probe (a second decode) must stay off them.
    from model import image_rules

    image = np.full((200, 300, 3), 255, dtype=np.uint8)
    cv2.circle(image, (150, 100), 60, (30, 90, 200), -1)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()

    def no_second_decode(*args: object, **kwargs: object) -> bool:
        raise AssertionError("white-cornered JPEG was decoded a second time")

    monkeypatch.setattr(image_rules, "_scan_is_short", no_second_decode)
    decoded, _ = decode(data)
    assert decoded.shape[:2] == (200, 300)
