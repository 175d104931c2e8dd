"""``auto`` picks the fastest backend present by measurement, caches it per model and machine, explains itself.

Fake backends with injected timings (each ``run`` advances a fake clock by its configured ms) make the
selection logic testable without timing anything real; the last tests run the real runtimes on the tiny model.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from model.logs import JsonLinesFormatter
from model.runtime.base import BackendInfo, BackendUnavailable, InferenceBackend
from model.runtime.choice_cache import CACHE_ENV, FILE_NAME, ChoiceCache, default_cache_path
from model.runtime.selection import Selected, list_candidates, select_backend
from model.runtime.trial import TrialSettings

MODEL_ID = "fake-int8-00000000"
ENTRY = f"{MODEL_ID}?threads=2"  # the cache entry of MODEL_ID at choose()'s 2 threads


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()


class FakeBackend(InferenceBackend):
    """A runtime whose devices take ``ms[device]`` per run on the fake clock."""

    name: ClassVar[str] = "fake"
    ms: ClassVar[dict[str, float]] = {}
    version: ClassVar[str] = "1.0"
    fail_open: ClassVar[set[str]] = set()
    fail_run: ClassVar[set[str]] = set()
    falls_back: ClassVar[set[str]] = set()
    options = frozenset({"spinning"})
    opened: ClassVar[list[tuple[str, str, dict[str, Any]]]] = []
    runs: ClassVar[dict[str, int]] = {}

    @classmethod
    def is_available(cls) -> bool:
        return True

    @classmethod
    def candidate_devices(cls) -> list[str]:
        return list(cls.ms)

    @classmethod
    def fingerprint(cls) -> dict[str, str]:
        return {cls.name: cls.version}

    def __init__(self, model_path: str, device: str = "auto", threads: int | None = None, **options: Any) -> None:
        if device in self.fail_open:
            raise RuntimeError(f"{device} driver not found")
        self.device = device
        self.opened.append((self.name, device, options))
        if device in self.falls_back:
            self.fallback = f"fell back from {device} to cpu"

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(backend=self.name, device=self.device)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.device in self.fail_run:
            raise RuntimeError("unsupported operator on this device")
        label = f"{self.name}/{self.device}"
        self.runs[label] = self.runs.get(label, 0) + 1
        CLOCK.now += self.ms[self.device] / 1000.0
        return np.zeros((len(batch), 4), dtype=np.float32)


def make_backend(name: str, priority: int, ms: dict[str, float], **traits: Any) -> type[FakeBackend]:
    attrs = {"name": name, "priority": priority, "ms": ms, "opened": [], "runs": {}, "fail_open": set()}
    attrs |= {"fail_run": set(), "falls_back": set(), "version": "1.0"} | traits
    return type(f"Fake_{name}", (FakeBackend,), attrs)


@pytest.fixture
def cache(tmp_path: Path) -> ChoiceCache:
    return ChoiceCache(tmp_path / "choice.json")


def choose(backends: dict[str, type[FakeBackend]], cache: ChoiceCache | None, **kwargs: Any) -> Selected:
    kwargs.setdefault("trial", TrialSettings(warmup=1, runs=5, min_runs=2, budget_s=10))
    return select_backend(
        "unused.onnx",
        kwargs.pop("backend", "auto"),
        kwargs.pop("device", "auto"),
        kwargs.pop("threads", 2),
        model_id=MODEL_ID,
        input_size=8,
        cache=cache if cache is not None else False,
        backends=backends,
        clock=CLOCK,
        **kwargs,
    )


def test_auto_takes_the_fastest_measured_candidate_not_the_first_in_priority(cache: ChoiceCache) -> None:
    slow = make_backend("ort", 10, {"cpu": 6.0})
    fast = make_backend("ov", 20, {"CPU": 3.0})
    selected = choose({"ort": slow, "ov": fast}, cache)
    choice = selected.choice
    assert (choice.backend, choice.device, choice.how) == ("ov", "CPU", "measured")
    assert choice.measured_ms == {"ort/cpu": 6.0, "ov/CPU": 3.0}
    assert choice.reason.startswith("measured: ov/CPU 3.00 ms, ort/cpu 6.00 ms")
    assert isinstance(selected.backend, fast)
    # Interleaved rounds: both were timed the same number of times, warm-up included.
    assert slow.runs == {"ort/cpu": 6} and fast.runs == {"ov/CPU": 6}


def test_every_device_of_a_runtime_is_a_candidate_and_the_gpu_can_win(cache: ChoiceCache) -> None:
    ort = make_backend("ort", 10, {"tensorrt": 1.5, "cuda": 2.5, "cpu": 6.0})
    ov = make_backend("ov", 20, {"CPU": 3.0, "GPU.0": 2.0})
    choice = choose({"ort": ort, "ov": ov}, cache).choice
    assert set(choice.measured_ms) == {"ort/tensorrt", "ort/cuda", "ort/cpu", "ov/CPU", "ov/GPU.0"}
    assert (choice.backend, choice.device) == ("ort", "tensorrt")


def test_the_choice_is_cached_and_reused_without_a_new_trial(cache: ChoiceCache) -> None:
    slow, fast = make_backend("ort", 10, {"cpu": 6.0}), make_backend("ov", 20, {"CPU": 3.0})
    first = choose({"ort": slow, "ov": fast}, cache).choice
    slow.runs.clear(), fast.runs.clear(), slow.opened.clear(), fast.opened.clear()
    second = choose({"ort": slow, "ov": fast}, cache).choice
    assert (second.backend, second.device, second.how) == ("ov", "CPU", "cached")
    assert second.measured_ms == first.measured_ms and second.measured_at == first.measured_at
    assert second.reason.startswith(f"cached from {first.measured_at}: ov/CPU 3.00 ms")
    assert slow.opened == [] and slow.runs == {} and fast.runs == {}  # nothing timed, only the winner opened
    assert [device for _, device, _ in fast.opened] == ["CPU"]


def test_a_runtime_upgrade_measures_again(cache: ChoiceCache, caplog: pytest.LogCaptureFixture) -> None:
    slow, fast = make_backend("ort", 10, {"cpu": 6.0}), make_backend("ov", 20, {"CPU": 3.0})
    choose({"ort": slow, "ov": fast}, cache)
    slow.version, slow.ms = "2.0", {"cpu": 1.0}  # the new release is faster here
    with caplog.at_level(logging.INFO, logger="model.runtime.selection"):
        choice = choose({"ort": slow, "ov": fast}, cache).choice
    assert (choice.backend, choice.how) == ("ort", "measured")
    changed = [r.fields for r in caplog.records if r.getMessage() == "backends_changed"]  # type: ignore[attr-defined]
    assert changed and changed[0]["changed"] == ["ort"]
    assert cache.get(ENTRY) is not None and cache.get(ENTRY).backend == "ort"  # type: ignore[union-attr]


def test_other_settings_are_measured_and_kept_beside_the_first(cache: ChoiceCache) -> None:
    """A device (threads unset) and a catalog run (2 threads, spinning) of one model keep their own choices."""
    slow, fast = make_backend("ort", 10, {"cpu": 6.0}), make_backend("ov", 20, {"CPU": 3.0})
    choose({"ort": slow, "ov": fast}, cache)
    slow.ms = {"cpu": 1.0}  # with 4 threads onnxruntime wins
    assert choose({"ort": slow, "ov": fast}, cache, threads=4, spinning=True).choice.how == "measured"
    entries = set(json.loads(cache.path.read_text())["models"])
    assert entries == {ENTRY, f"{MODEL_ID}?threads=4&spinning=True"}
    again = [choose({"ort": slow, "ov": fast}, cache, threads=t, spinning=s).choice for t, s in ((2, None), (4, True))]
    assert [(c.how, c.backend) for c in again] == [("cached", "ov"), ("cached", "ort")]
    cache.forget(MODEL_ID)  # `model info --remeasure`: every settings' entry of the model goes
    assert json.loads(cache.path.read_text())["models"] == {}


def test_another_model_is_measured_on_its_own(cache: ChoiceCache) -> None:
    slow, fast = make_backend("ort", 10, {"cpu": 6.0}), make_backend("ov", 20, {"CPU": 3.0})
    choose({"ort": slow, "ov": fast}, cache)
    other = select_backend(
        "unused.onnx",
        model_id="other-fp32-11111111",
        input_size=8,
        cache=cache,
        backends={"ort": slow, "ov": fast},
        clock=CLOCK,
    )
    assert other.choice.how == "measured"
    assert set(json.loads(cache.path.read_text())["models"]) == {ENTRY, "other-fp32-11111111"}


def test_an_explicit_backend_wins_without_a_trial(cache: ChoiceCache) -> None:
    slow, fast = make_backend("ort", 10, {"cpu": 6.0}), make_backend("ov", 20, {"CPU": 3.0})
    selected = choose({"ort": slow, "ov": fast}, cache, backend="ort", device="cpu")
    assert (selected.choice.backend, selected.choice.how, selected.choice.reason) == (
        "ort",
        "explicit",
        "explicit backend setting",
    )
    assert fast.opened == [] and slow.runs == {}
    assert not cache.path.exists()


def test_a_candidate_that_fails_to_load_is_skipped_with_its_error(
    cache: ChoiceCache, caplog: pytest.LogCaptureFixture
) -> None:
    ort = make_backend("ort", 10, {"cuda": 1.0, "cpu": 6.0}, fail_open={"cuda"})
    ov = make_backend("ov", 20, {"CPU": 3.0, "GPU": 2.0}, fail_run={"GPU"})
    with caplog.at_level(logging.WARNING, logger="model.runtime.trial"):
        choice = choose({"ort": ort, "ov": ov}, cache).choice
    assert (choice.backend, choice.device, choice.how) == ("ov", "CPU", "measured")
    assert choice.skipped == {
        "ort/cuda": "RuntimeError: cuda driver not found",
        "ov/GPU": "RuntimeError: unsupported operator on this device",
    }
    assert "skipped ort/cuda, ov/GPU" in choice.reason
    skipped = [r.fields for r in caplog.records if r.getMessage() == "backend_candidate_skipped"]  # type: ignore[attr-defined]
    logged = {f["candidate"]: f["error"] for f in skipped}
    assert logged == {"ort/cuda": "cuda driver not found", "ov/GPU": "unsupported operator on this device"}


def test_a_provider_that_silently_falls_back_is_not_timed_as_the_gpu(cache: ChoiceCache) -> None:
    ort = make_backend("ort", 10, {"cuda": 6.0, "cpu": 6.0}, falls_back={"cuda"})
    ov = make_backend("ov", 20, {"CPU": 3.0})
    choice = choose({"ort": ort, "ov": ov}, cache).choice
    assert "ort/cuda" not in choice.measured_ms and choice.skipped["ort/cuda"] == "fell back from cuda to cpu"


def test_when_every_candidate_fails_start_up_gets_one_clear_error(cache: ChoiceCache) -> None:
    ort = make_backend("ort", 10, {"cpu": 6.0}, fail_open={"cpu"})
    ov = make_backend("ov", 20, {"CPU": 3.0}, fail_open={"CPU"})
    with pytest.raises(BackendUnavailable, match=r"ort/cpu: RuntimeError: cpu driver not found; ov/CPU: RuntimeError"):
        choose({"ort": ort, "ov": ov}, cache)


def test_one_survivor_is_the_only_candidate_and_is_not_cached(cache: ChoiceCache) -> None:
    ort = make_backend("ort", 10, {"cuda": 1.0, "cpu": 6.0}, fail_open={"cuda"})
    choice = choose({"ort": ort}, cache).choice
    assert (choice.device, choice.how) == ("cpu", "only candidate")
    assert choice.reason == "only candidate (1 other(s) failed to load)"
    assert not cache.path.exists()  # a GPU that failed this time is tried again next start


def test_a_single_candidate_is_opened_without_a_trial(cache: ChoiceCache) -> None:
    ort = make_backend("ort", 10, {"cpu": 6.0})
    choice = choose({"ort": ort}, cache).choice
    assert (choice.how, choice.reason, choice.measured_ms) == ("only candidate", "only candidate", {})
    assert ort.runs == {}


def test_a_cached_choice_that_no_longer_loads_is_measured_again(cache: ChoiceCache) -> None:
    ort, ov = make_backend("ort", 10, {"cpu": 6.0}), make_backend("ov", 20, {"CPU": 3.0})
    choose({"ort": ort, "ov": ov}, cache)
    ov.fail_open = {"CPU"}
    ov.ms = {"CPU": 3.0, "GPU": 5.0}  # a new device appears so that two candidates remain
    choice = choose({"ort": ort, "ov": ov}, cache).choice
    assert (choice.backend, choice.how) == ("ov", "measured") and choice.device == "GPU"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"version": 99, "models": {}}',
        '{"version": 1, "models": {"fake-int8-00000000?threads=2": {"backend": 3}}}',
    ],
)
def test_an_unreadable_cache_is_ignored_and_rewritten(cache: ChoiceCache, content: str) -> None:
    cache.path.write_text(content)
    choice = choose(
        {"ort": make_backend("ort", 10, {"cpu": 6.0}), "ov": make_backend("ov", 20, {"CPU": 3.0})}, cache
    ).choice
    assert choice.how == "measured"
    assert json.loads(cache.path.read_text())["models"][ENTRY]["backend"] == "ov"


def test_an_unwritable_cache_never_stops_start_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = ChoiceCache(blocker / "sub" / "choice.json")  # its parent is a file: mkdir fails
    with caplog.at_level(logging.WARNING, logger="model.runtime.choice_cache"):
        choice = choose(
            {"ort": make_backend("ort", 10, {"cpu": 6.0}), "ov": make_backend("ov", 20, {"CPU": 3.0})}, cache
        ).choice
    assert choice.how == "measured"
    assert any(r.getMessage() == "backend_choice_not_cached" for r in caplog.records)
    assert list(tmp_path.iterdir()) == [blocker]  # no temporary file left behind


def test_the_trial_respects_its_time_budget() -> None:
    ort, ov = make_backend("ort", 10, {"cpu": 900.0}), make_backend("ov", 20, {"CPU": 800.0})
    choice = choose(
        {"ort": ort, "ov": ov}, None, trial=TrialSettings(warmup=0, runs=100, min_runs=3, budget_s=2.0)
    ).choice
    # Each round costs 1.7 s of (fake) time: rounds stop once the budget is spent, but never below min_runs
    # (3 timed runs, after the one run every candidate makes before it is timed).
    assert ort.runs == {"ort/cpu": 4} and ov.runs == {"ov/CPU": 4}
    assert choice.backend == "ov"


def test_device_names_filter_candidates_case_insensitively(cache: ChoiceCache) -> None:
    ort = make_backend("ort", 10, {"cuda": 1.0, "cpu": 6.0})
    ov = make_backend("ov", 20, {"CPU": 3.0, "GPU": 2.0})
    labels = [c.label for c in list_candidates({"ort": ort, "ov": ov}, "cpu")]
    assert labels == ["ort/cpu", "ov/CPU"]
    choice = choose({"ort": ort, "ov": ov}, cache, device="cpu").choice
    assert (choice.backend, choice.device) == ("ov", "CPU")
    with pytest.raises(BackendUnavailable, match="offers device 'npu'"):
        choose({"ort": ort, "ov": ov}, cache, device="npu")


def test_options_reach_every_candidate_that_takes_them(cache: ChoiceCache) -> None:
    ort, ov = make_backend("ort", 10, {"cpu": 6.0}), make_backend("ov", 20, {"CPU": 3.0}, options=frozenset())
    choose({"ort": ort, "ov": ov}, cache, spinning=False)
    assert ort.opened == [("ort", "cpu", {"spinning": False})]
    assert ov.opened == [("ov", "CPU", {})]


def test_the_choice_and_its_reason_are_one_json_log_line(cache: ChoiceCache, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="model.runtime.selection"):
        choose({"ort": make_backend("ort", 10, {"cpu": 6.0}), "ov": make_backend("ov", 20, {"CPU": 3.0})}, cache)
    (record,) = [r for r in caplog.records if r.getMessage() == "inference_backend_chosen"]
    line = json.loads(JsonLinesFormatter().format(record))
    assert (line["backend"], line["device"], line["how"]) == ("ov", "CPU", "measured")
    assert line["measured_ms"] == {"ort/cpu": 6.0, "ov/CPU": 3.0}
    assert line["reason"].startswith("measured: ov/CPU 3.00 ms")


def test_default_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("SVCUID", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "edge-visual-search" / FILE_NAME
    # Under Greengrass the nucleus starts the component in its work folder and sets SVCUID.
    monkeypatch.setenv("SVCUID", "abc")
    monkeypatch.chdir(tmp_path)
    assert default_cache_path() == tmp_path / FILE_NAME
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "explicit.json"))
    assert default_cache_path() == tmp_path / "explicit.json"


# --- the real runtimes, on the tiny model -------------------------------------------------------------------


def test_real_runtimes_are_measured_then_cached(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from model.featurizer import Featurizer

    cache_file = tmp_path / "choice.json"
    first = Featurizer(tiny_model, threads=1, choice_cache=cache_file)
    assert first.backend_choice.how == "measured"
    assert set(first.backend_choice.measured_ms) == {"onnxruntime/cpu", "openvino/CPU"}
    assert first.backend_info.backend == first.backend_choice.backend
    second = Featurizer(tiny_model, threads=1, choice_cache=cache_file)
    assert second.backend_choice.how == "cached"
    assert (second.backend_choice.backend, second.backend_choice.device) == (
        first.backend_choice.backend,
        first.backend_choice.device,
    )


def test_a_backend_is_available_exactly_where_its_runtime_package_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    from model.runtime.base import available_backends, registry

    backends = registry()
    assert {backends["onnxruntime"].module, backends["openvino"].module} == {"onnxruntime", "openvino"}
    assert {"onnxruntime", "openvino"} <= set(available_backends())  # both are in the development install
    monkeypatch.setitem(sys.modules, "openvino", None)  # as on a device without the extra
    assert not backends["openvino"].is_available()
    assert "openvino" not in available_backends() and "onnxruntime" in available_backends()
