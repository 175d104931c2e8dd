"""libjpeg's warnings stay off the terminal during decoding; everything else written to stderr still arrives."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from model.image_rules import decode
from model.stderr_filter import LIBJPEG_WARNINGS, filtered_stderr


def _grey_cornered_jpeg() -> bytes:
    # A flat mid-grey bottom-right corner sends decode() through its short-scan probe, whose extra bytes make
    # libjpeg print "Corrupt JPEG data: N extraneous bytes before marker 0xd9" for a perfectly good file.
    image = np.full((128, 160, 3), 128, np.uint8)
    cv2.rectangle(image, (10, 10), (70, 60), (30, 160, 220), -1)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def test_decoding_a_good_jpeg_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    data = _grey_cornered_jpeg()
    # The same decode the probe runs, unfiltered: the noise this test would catch is real.
    probed = data[:-2] + bytes(range(1, 200)) + data[-2:]  # bytes between the scan and the EOI marker
    cv2.imdecode(np.frombuffer(probed, np.uint8), cv2.IMREAD_COLOR)
    assert "Corrupt JPEG data" in capfd.readouterr().err

    image, info = decode(data)
    assert image.shape == (128, 160, 3) and info.format == "jpeg"
    assert capfd.readouterr().err == ""


def test_other_writes_to_stderr_inside_the_block_are_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with filtered_stderr(LIBJPEG_WARNINGS):
        os.write(2, b"Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\n")
        os.write(2, b"a log line from another thread\n")
        with filtered_stderr(LIBJPEG_WARNINGS):  # nested (two decoding threads): restored once, at the end
            os.write(2, b"Premature end of JPEG file\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "a log line from another thread\nafter\n"
