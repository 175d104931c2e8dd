"""``make demo``'s catalog adaptation: ``visual-search catalog adapt`` on the demo index, in the background.

The demo shows matches at once from the unadapted index. Meanwhile a separate process at lower priority
(niceness 10, one featurizer thread, so the camera loop keeps a core) runs the shipped command on the demo
index; its progress bars (tqdm, on its stderr) become one status line of the console. When it has written
the adapted index (a whole-folder swap, ``layout.apply_head``), the running search loads it at its next
manifest check (``VS_INDEX_RELOAD_S``, :mod:`cloud_lambda.search.catalogs`) and each match record names the
head that scored it. Training vectors are cached per item in a work dir beside the index, so a stopped run
resumes, and a later demo whose index already has a head for this model, these images and these settings
starts adapted (:meth:`DemoAdaptation.state`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from simulator.console import Console

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_ADAPT_VIEWS = 60
"""Training views per catalog item for the demo's adaptation (docs/match-quality.md)."""
NICENESS = 10
PROGRESS = re.compile(r"(?P<stage>[^|]+?):\s+\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)(?:\s*\[(?P<times>[^,\]]*))?")
"""A tqdm bar as it writes itself: ``adapt: head:  40%|████  | 12/30 [00:10<00:15, 1.2epoch/s]``."""


@dataclass(frozen=True)
class DemoAdaptation:
    """What the demo adapts (its index, from its catalog images, for its model) and with which settings."""

    index_dir: Path
    images_dir: Path
    items_file: Path | None
    model: Path
    views_per_item: int = DEMO_ADAPT_VIEWS
    epochs: int | None = None
    """Head training epochs; None: ``catalog adapt``'s default (tests use 1)."""
    dim: int | None = None
    threads: int = 1

    @property
    def model_id(self) -> str:
        from model.sidecar import read_sidecar

        return read_sidecar(self.model).model_id

    @property
    def work_dir(self) -> Path:
        """One per model beside the index: a new model starts over, an interrupted run of this one resumes."""
        return self.index_dir.with_name(f"{self.index_dir.name}.{self.model_id}.adapt-work")

    def settings(self) -> Any:
        """The ``AdaptSettings`` ``catalog adapt`` builds from :meth:`command`'s options (compared by :meth:`state`)."""
        from model.adapt.pipeline import AdaptSettings, with_head_settings

        settings = AdaptSettings(views_per_item=self.views_per_item)
        changes = {k: v for k, v in (("epochs", self.epochs), ("out_dim", self.dim)) if v is not None}
        return with_head_settings(settings, **changes) if changes else settings

    def state(self) -> str:
        """``current`` (the index's head fits this model, these images, these settings), ``stale`` (it has another
        head: still served until the new one is written) or ``missing``."""
        from cloud_lambda.catalog.adapt import catalog_images
        from cloud_lambda.catalog.layout import read_manifest
        from model.adapt.pipeline import data_hash
        from model.retrieval.settings import catalog_views_of

        manifest = read_manifest(self.index_dir)
        section = manifest.adaptation
        if not section:
            return "missing"
        found = catalog_images(self.index_dir, str(self.images_dir), self.items_file)
        current = (
            section.get("model_id") == self.model_id
            and section.get("data_hash") == data_hash(found.ids, found.images)
            and section.get("settings") == self.settings().as_dict()
            # A head carried over a re-index with other catalog vectors learned those, not these.
            and section.get("catalog_views") == catalog_views_of(manifest.retrieval).model_dump(mode="json")
        )
        return "current" if current else "stale"

    def arguments(self) -> list[str]:
        """``catalog adapt``'s arguments for this adaptation."""
        args = ["catalog", "adapt", str(self.index_dir), "--source", str(self.images_dir), "--model", str(self.model)]
        args += ["--metadata", str(self.items_file)] if self.items_file else []
        args += ["--views-per-item", str(self.views_per_item), "--work-dir", str(self.work_dir)]
        args += ["--epochs", str(self.epochs)] if self.epochs is not None else []
        args += ["--dim", str(self.dim)] if self.dim is not None else []
        return [*args, "--threads", str(self.threads)]

    def shown(self) -> str:
        """The command as a user would type it (paths relative to the working directory where they can be)."""

        def short(arg: str) -> str:
            path = Path(arg)
            return str(path.relative_to(Path.cwd())) if path.is_absolute() and path.is_relative_to(Path.cwd()) else arg

        return "visual-search " + " ".join(shlex.quote(short(a)) for a in self.arguments())

    def remove_stale_work_dirs(self) -> None:
        """Other models' work dirs: their cached vectors can never be used again."""
        for stale in self.index_dir.parent.glob(f"{self.index_dir.name}.*.adapt-work"):
            if stale != self.work_dir and stale.is_dir():
                shutil.rmtree(stale)


def ensure_adapted(plan: DemoAdaptation, progress: bool = True) -> dict[str, Any] | None:
    """Adapt in this process, now (``--adapt first``, ``demo_threshold``) unless the head is current; → the
    ``catalog adapt`` summary, or None when there was nothing to do."""
    from cloud_lambda.catalog.adapt import adapt_index

    if plan.state() == "current":
        return None
    plan.remove_stale_work_dirs()
    return adapt_index(
        plan.index_dir,
        str(plan.images_dir),
        plan.model,
        metadata=plan.items_file,
        settings=plan.settings(),
        work_dir=plan.work_dir,
        threads=plan.threads,
        progress=progress,
    )


def parse_progress(text: str) -> tuple[str, int, int, str] | None:
    """(stage, done, total, elapsed<left) of one tqdm update, or None for any other line."""
    found = PROGRESS.search(text)
    if found is None:
        return None
    return found["stage"].strip(), int(found["done"]), int(found["total"]), (found["times"] or "").strip()


def done_line(section: dict[str, Any]) -> str:
    """The line printed when the adapted index is written: its size, time and before/after figures."""
    figures = ", ".join(
        f"{row['views']} {row['before']['recall@1']:.2f} → {row['after']['recall@1']:.2f}"
        for row in section.get("before_after", [])
    )
    return (
        f"   adapted index written: {section.get('items')} items, head {section.get('in_dim')}→{section.get('out_dim')},"
        f" {section.get('seconds', 0):.0f} s{f'; R@1 {figures}' if figures else ''}."
        " The running search picks it up by itself; matches marked 'adapted' come from it"
    )


class BackgroundAdaptation:
    """``catalog adapt`` in a child process at lower priority, its progress on the console's status line."""

    def __init__(self, plan: DemoAdaptation, console: Console, log_path: Path) -> None:
        self.plan = plan
        self.console = console
        self.log_path = log_path
        self.tail: deque[str] = deque(maxlen=12)
        self.returncode: int | None = None
        self.section: dict[str, Any] | None = None
        self.finished = threading.Event()
        self._stopping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> BackgroundAdaptation:
        self.plan.remove_stale_work_dirs()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it; closed once the child is gone
        # Its own session: a Ctrl-C in the terminal is the demo's to handle (it stops the child; the work dir
        # keeps every finished item, so the next demo resumes there).
        self._process = subprocess.Popen(
            [sys.executable, "-m", "cloud_lambda", *self.plan.arguments()],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        log.close()
        with contextlib.suppress(AttributeError, OSError):  # no setpriority (Windows): normal priority
            os.setpriority(os.PRIO_PROCESS, self._process.pid, NICENESS)
        self._reader = threading.Thread(target=self._follow, name="adapt-progress", daemon=True)
        self._reader.start()
        return self

    def wait(self, timeout: float | None = None) -> int | None:
        """The child's exit status once it is done and its result printed (None: still running after ``timeout``)."""
        self.finished.wait(timeout)
        return self.returncode

    def stop(self) -> None:
        """Stop the child if it still runs (what it finished stays cached in the work dir)."""
        process = self._process
        if process is not None and process.poll() is None:
            self._stopping = True
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(10)

    def _follow(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        self._read_updates(self._process.stderr)
        self.returncode = self._process.wait()
        self.console.clear_status()
        try:
            self._report()
        finally:
            self.finished.set()

    def _read_updates(self, stream: IO[bytes]) -> None:
        """Each tqdm update (they end in ``\\r``) or line (``\\n``) of the child's stderr, as it comes."""
        pending = b""
        while chunk := stream.read1(4096):  # type: ignore[attr-defined]  # a BufferedReader
            *complete, pending = re.split(rb"[\r\n]", pending + chunk)
            for raw in complete:
                self._update(raw.decode("utf-8", "replace"))
        if pending:
            self._update(pending.decode("utf-8", "replace"))

    def _update(self, text: str) -> None:
        if not text.strip():
            return
        parsed = parse_progress(text)
        if parsed is None:
            self.tail.append(text.strip())
            return
        stage, done, total, times = parsed
        if stage.endswith("head") and done >= total:
            stage, done, total, times = "adapt: before/after on held-out views", 0, 0, ""
        bar = f" {done}/{total}" + (f" [{times}]" if times else "") if total else " …"
        quarter = 4 * done // total if total else 0
        self.console.status(f"   adapting in the background: {stage}{bar}", milestone=f"{stage} {quarter}")

    def _report(self) -> None:
        from cloud_lambda.catalog.layout import CatalogError, read_manifest

        if self.returncode == 0:
            try:
                self.section = read_manifest(self.plan.index_dir).adaptation
            except CatalogError as exc:
                self.console.line(f"   adaptation finished but its index cannot be read: {exc}")
                return
            self.console.line(done_line(self.section or {}))
        elif self._stopping:
            self.console.line("   adaptation stopped; the next `make demo` resumes it (its work dir keeps what it did)")
        else:
            last = " | ".join(list(self.tail)[-3:])
            self.console.line(
                f"   adaptation failed (exit {self.returncode}): {last}. The demo goes on with the unadapted index;"
                f" the command's output is in {self.log_path}, run it by hand: {self.plan.shown()}"
            )
