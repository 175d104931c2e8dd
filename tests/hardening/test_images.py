"""Hostile images for catalog indexing and photo search: rejected with a reason from the header where
possible, never crashing the decoder, and the odd-but-valid kinds (CMYK, 16-bit, alpha, grayscale) handled.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cloud_lambda.search.service import SearchService
from model import image_rules
from model.image_rules import ImageRejected
from tests.hardening.conftest import Catalog, count_case, count_escape


def photo(size: tuple[int, int] = (160, 120), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), size, interpolation=cv2.INTER_CUBIC)


def encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes declaring width×height: decoding would need width*height*3 bytes of memory."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    real = encode(".jpg", photo((64, 64)))
    sof = real.find(b"\xff\xc0")
    return real[: sof + 5] + struct.pack(">HH", height, width) + real[sof + 9 :]


def cmyk_jpeg() -> bytes:
    """Adobe-style CMYK JPEG (4 components), made with OpenCV's encoder from a 4-channel... via Pillow if present."""
    pil = pytest.importorskip("PIL.Image")
    from io import BytesIO

    out = BytesIO()
    pil.fromarray(photo()[:, :, ::-1]).convert("CMYK").save(out, "JPEG")
    return out.getvalue()


# name → (bytes, expected rejection reason, or None when it must be accepted)
def cases() -> dict[str, tuple[bytes, str | None]]:
    jpg, png = encode(".jpg", photo()), encode(".png", photo())
    corrupt_png = bytearray(png)
    corrupt_png[60:80] = b"\x00" * 20  # IDAT bytes zeroed: CRC and zlib stream break
    return {
        "truncated jpeg (half)": (jpg[: len(jpg) // 2], "truncated"),
        "truncated jpeg (header only)": (jpg[:20], "truncated"),
        "truncated png (half)": (png[: len(png) // 2], "truncated"),
        "truncated png (signature only)": (png[:8], "truncated"),
        "corrupt png data": (bytes(corrupt_png), "undecodable"),
        "png bomb 100000x100000": (png_bomb(100_000, 100_000), "too_big"),
        "png bomb 2^31 x 2^31": (png_bomb(2**31 - 1, 2**31 - 1), "too_big"),
        "jpeg bomb 65000x65000": (jpeg_bomb(65_000, 65_000), "too_big"),
        "png declaring 0x0": (png_bomb(0, 0), "too_small"),
        "png 20000x64 aspect": (png_bomb(4000, 64), "aspect_ratio"),
        "gif": (b"GIF89a" + b"\0" * 100, "unsupported_format"),
        "webp": (b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 100, "unsupported_format"),
        "html named .jpg": (b"<html><script>alert(1)</script></html>", "not_image"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "not_image"),
        "empty": (b"", "empty"),
        "over 4 MB": (b"\xff\xd8\xff" + b"\0" * (4 * 1024 * 1024), "too_large"),
        "jpeg with no SOF before scan": (b"\xff\xd8\xff\xda\x00\x02" + b"\0" * 64 + b"\xff\xd9", "undecodable"),
        # The frame header declares more than the scan data holds (a short scan with an EOI).
        "jpeg header lying about size": (jpeg_bomb(3000, 2000), "truncated"),
        # Polyglots: valid images carrying another format's payload are handled as the image they are.
        "polyglot png + zip/html tail": (png + b"PK\x03\x04<script>alert(1)</script>", None),
        "polyglot jpeg with html comment": (
            jpg[:2] + b"\xff\xfe" + struct.pack(">H", 40) + b"<script>alert(1)</script>".ljust(38) + jpg[2:],
            None,
        ),
        "png named .jpg (wrong extension)": (png, None),
        "16-bit png": (encode(".png", (photo().astype(np.uint16) * 257)), None),
        "png with alpha": (encode(".png", np.dstack([photo(), np.full((120, 160), 128, np.uint8)])), None),
        "grayscale png": (encode(".png", cv2.cvtColor(photo(), cv2.COLOR_BGR2GRAY)), None),
        "grayscale jpeg": (encode(".jpg", cv2.cvtColor(photo(), cv2.COLOR_BGR2GRAY)), None),
        "progressive jpeg": (encode(".jpg", photo(), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), None),
    }


CASES = cases()


@pytest.mark.parametrize("name", CASES)
def test_image_rules(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data, reason = CASES[name]
    count_case("image: hostile/odd image")
    header_only = reason in ("too_big", "too_small", "aspect_ratio", "too_large", "empty", "not_image")
    if header_only:
        # Rejected from the header: the pixel decoder must never be reached.
        def refuse(*_a: object) -> None:
            raise AssertionError("decoded a file that the header already rules out")

        monkeypatch.setattr(cv2, "imdecode", refuse)
    try:
        image, info = image_rules.decode(data)
    except ImageRejected as exc:
        assert reason is not None, f"{name}: rejected ({exc.reason}: {exc}) but should be accepted"
        assert exc.reason == reason, f"{name}: {exc.reason}: {exc}"
        return
    except Exception:
        count_escape("image: hostile/odd image")
        raise
    assert reason is None, f"{name}: accepted, expected {reason}"
    # Accepted: always 3-channel 8-bit BGR of the declared size, whatever the file's own layout.
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert (image.shape[1], image.shape[0]) == (info.width, info.height)


def test_cmyk_jpeg_is_decoded_to_bgr() -> None:
    image, info = image_rules.decode(cmyk_jpeg())
    count_case("image: hostile/odd image")
    assert image.shape == (120, 160, 3) and info.format == "jpeg"
    # Colour survives the CMYK round trip (not inverted): close to the original picture.
    assert float(np.abs(image.astype(int) - photo().astype(int)).mean()) < 25


@pytest.fixture(scope="module")
def search(hardened_service: SearchService) -> SearchService:
    return hardened_service


@pytest.mark.parametrize("name", CASES)
def test_photo_search_answers_every_image(search: SearchService, name: str) -> None:
    from cloud_lambda.api import handler as api

    api.set_service(search)
    data, reason = CASES[name]
    count_case("api: photo search hostile image")
    import base64

    kind = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
    response = api.lambda_handler(
        {
            "rawPath": "/api/search",
            "requestContext": {"http": {"method": "POST"}},
            "headers": {"content-type": kind},
            "body": base64.b64encode(data).decode(),
            "isBase64Encoded": True,
        },
        None,
    )
    body = json.loads(response["body"])
    if reason is None:
        assert response["statusCode"] == 200 and body["matches"], body
    else:
        assert response["statusCode"] in (400, 413, 415), body
        assert body["error"]["code"] in (reason, "empty"), body
    api.set_service(None)


def test_catalog_indexing_reports_each_hostile_file(hardening_catalog: Catalog, tmp_path: Path) -> None:
    from model.hub import main

    folder = tmp_path / "images"
    folder.mkdir()
    names: dict[str, str | None] = {}
    for i, (name, (data, reason)) in enumerate(CASES.items()):
        if name in ("empty", "over 4 MB", "jpeg header lying about size"):
            continue
        file = f"case-{i:02d}.jpg" if "wrong extension" in name or "html" in name else f"case-{i:02d}.img"
        (folder / file).write_bytes(data)
        names[file] = reason
    out = tmp_path / "index"
    code = main(
        ["catalog", "index", str(folder), "--out", str(out), "--model", str(hardening_catalog.model), "--no-progress"]
    )
    assert code == 0
    count_case("catalog: hostile image files")
    report = [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines() if line.strip()]
    rejected = {Path(r.get("file") or r.get("key") or r.get("path", "")).name: r for r in report}
    accepted = json.loads((out / "manifest.json").read_text())["count"]
    assert accepted == sum(1 for r in names.values() if r is None), (accepted, rejected)
    for file, reason in names.items():
        if reason is not None:
            assert file in rejected, f"{file} was neither indexed nor reported"
            assert reason in json.dumps(rejected[file]), rejected[file]
