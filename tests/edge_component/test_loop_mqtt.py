"""The loop end to end against a real mosquitto: plain and mutual TLS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.contracts.status import parse_status
from model.contracts.wire import decode
from model.featurizer import Featurizer
from simulator.stack.processes import MosquittoProcess
from simulator.stack.tls import Pki
from tests.edge_component.conftest import Collector, read_video
from tests.edge_component.helpers import Running, config
from tests.wait import wait_for


def _expected_vectors(model: Path, video: Path) -> list[np.ndarray]:
    featurizer = Featurizer(model, backend="onnxruntime", threads=1)
    return [featurizer.featurize_frame(frame) for frame in read_video(video)]


def _check_messages(payloads: list[bytes], expected: list[np.ndarray], device_id: str, dtype: str) -> None:
    messages = [decode(p) for p in payloads]
    assert len(messages) == len(expected)
    seqs = [m.seq for m in messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for message, want in zip(messages, expected, strict=True):
        assert message.device_id == device_id
        assert message.dtype == dtype
        assert message.frame_w == 160 and message.frame_h == 120
        # float16 on the wire keeps ~3 decimal digits; float32 is exact.
        tolerance = 2e-3 if dtype == "float16" else 1e-6
        np.testing.assert_allclose(message.vector, want, atol=tolerance)
        # Cosine, not the raw dot: float16 rounding also moves the norm (by up to ~1e-4 for a 64-d vector).
        cosine = float(np.dot(message.vector, want) / (np.linalg.norm(message.vector) * np.linalg.norm(want)))
        assert cosine > 0.9999


def test_video_file_over_plain_mqtt(tiny_model: Path, video_file: Path, mosquitto: MosquittoProcess) -> None:
    expected = _expected_vectors(tiny_model, video_file)
    assert len(expected) == 12
    collector = Collector(mosquitto.host, mosquitto.port, "visualsearch/cam-01/#")
    cfg = config(
        "cam-01",
        source={"kind": "video", "path": str(video_file), "realtime": False},
        publish={"kind": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}},
    )
    run = Running(cfg, tiny_model)
    try:
        run.join()
        assert run.publisher.flush(10)
        assert collector.wait_for(lambda msgs: sum(t.endswith("/features") for t, _ in msgs) >= 12)
    finally:
        run.stop()
    _check_messages(collector.payloads(), expected, "cam-01", "float16")
    assert run.loop.stats()["processed"] == 12
    # the status topic carried at least the final status, and it parses
    assert collector.wait_for(lambda msgs: any(t.endswith("/status") for t, _ in msgs))
    statuses = [parse_status(p) for p in collector.payloads("/status")]
    assert statuses[-1] == {"v": 1, "device_id": "cam-01", "state": "offline"}  # the clean-stop goodbye
    last = [s for s in statuses if "frames" in s][-1]
    assert last["device_id"] == "cam-01" and last["backend"] == "onnxruntime"
    assert last["frames"]["captured"] == 12
    collector.close()


def test_video_file_over_mutual_tls(
    tiny_model: Path, video_file: Path, tls_mosquitto: MosquittoProcess, pki: Pki
) -> None:
    expected = _expected_vectors(tiny_model, video_file)
    assert tls_mosquitto.tls is not None
    collector = Collector(tls_mosquitto.host, tls_mosquitto.port, "visualsearch/cam-tls/features")
    cfg = config(
        "cam-tls",
        source={"kind": "video", "path": str(video_file), "realtime": False},
        publish={
            "kind": "mqtt",
            "dtype": "float32",
            "mqtt": {
                "host": "localhost",
                "port": tls_mosquitto.tls.port,
                "ca_file": str(pki.ca.cert),
                "cert_file": str(pki.client.cert),
                "key_file": str(pki.client.key),
            },
        },
    )
    run = Running(cfg, tiny_model)
    try:
        run.join()
        assert run.publisher.flush(10)
        assert collector.wait_for(lambda msgs: len(msgs) >= 12)
    finally:
        run.stop()
    _check_messages(collector.payloads(), expected, "cam-tls", "float32")
    collector.close()


def test_client_without_certificate_is_refused(
    tiny_model: Path, video_file: Path, tls_mosquitto: MosquittoProcess, pki: Pki
) -> None:
    assert tls_mosquitto.tls is not None
    collector = Collector(tls_mosquitto.host, tls_mosquitto.port, "visualsearch/#")
    cfg = config(
        "cam-nocert",
        source={"kind": "video", "path": str(video_file), "realtime": False},
        publish={
            "kind": "mqtt",
            "queue_capacity": 5,
            "mqtt": {"host": "localhost", "port": tls_mosquitto.tls.port, "ca_file": str(pki.ca.cert)},
        },
    )
    run = Running(cfg, tiny_model)
    try:
        run.join()
        assert not run.publisher.flush(2)
        wait_for(lambda: run.publisher.last_error is not None, 10, "the refused connection to be recorded")
        stats = run.publisher.stats()
        assert not stats["connected"]
        assert "failed" in (stats["last_error"] or "") or "refused" in (stats["last_error"] or "")
        # nothing was delivered; the queue kept the newest 5 and counted the 7 it had to drop
        assert stats["sent"] == 0
        assert stats["queue_depth"] == 5 and stats["dropped"] == 7
    finally:
        run.stop()
    assert collector.payloads() == []
    collector.close()
