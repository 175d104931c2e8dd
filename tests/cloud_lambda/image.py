"""The cloud image's install, done the way ``cloud_lambda/Dockerfile`` says, without Docker.

The Dockerfile is read, not restated: every ``WORKDIR`` and ``COPY`` is replayed into a folder that stands
for the image's root (only what the Dockerfile copies is there), and the ``pip install`` commands of its ``RUN``
lines run with a fresh venv's pip in the ``WORKDIR`` of that moment. The rest of a ``RUN`` line (``useradd``)
is the operating system's business; ``rm -rf`` of a folder inside the root is replayed, so the sources the
install was made from are gone, as in the image. ``--no-cache-dir`` is dropped so the pip cache is reused (the
install itself is the same), and the build sees this machine's pip configuration (its index mirror and wheel
folders), as a build sees its network. The container is then started from the ``ENTRYPOINT`` in the last
``WORKDIR``, with a clean environment: the venv's ``bin`` first on ``PATH``, no ``PYTHONPATH``, no checkout.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "cloud_lambda" / "Dockerfile"


@dataclass
class ImageInstall:
    root: Path
    venv: Path
    workdir: Path
    entrypoint: list[str]
    base_image: str
    install_s: float = 0.0
    commands: list[list[str]] = field(default_factory=list)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """The container's environment: nothing from this test process but what a container would have."""
        base = {
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "home"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.root / "tmp"),
            "LAMBDA_TASK_ROOT": str(self.workdir),
        }
        return base | extra

    def in_root(self, path: str) -> Path:
        return self.root / path.lstrip("/")


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def _build_env(image: ImageInstall) -> dict[str, str]:
    """The build's environment: this machine's pip configuration, index mirrors and cache (what a ``docker build``
    would get from its own network and cache), nothing that points Python at a checkout or another venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{image.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run_step(words: list[str], cwd: Path, image: ImageInstall) -> None:
    """One ``&&``-separated command of a RUN line, in the image's terms."""
    if words[:2] == ["pip", "install"]:
        args = [w for w in words[2:] if w != "--no-cache-dir"]
        command = [str(image.python), "-m", "pip", "install", "--quiet", *args]
        image.commands.append(command)
        subprocess.run(command, cwd=cwd, check=True, env=_build_env(image))
    elif words[:2] == ["rm", "-rf"]:
        for target in words[2:]:
            shutil.rmtree(image.in_root(target), ignore_errors=True)


def install_image(root: Path) -> ImageInstall:
    """Replay the Dockerfile's build into ``root`` (a fresh folder); returns how to start the container."""
    lines = _logical_lines(DOCKERFILE.read_text())
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    image = ImageInstall(root=root, venv=venv, workdir=root, entrypoint=[], base_image="")
    (root / "home").mkdir(parents=True)
    (root / "tmp").mkdir()
    started = time.perf_counter()
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            image.base_image = rest.strip()
        elif instruction == "WORKDIR":
            image.workdir = image.in_root(rest.strip())
            image.workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, target = shlex.split(rest)
            _copy(sources, target, image)
        elif instruction == "RUN":
            cwd = image.workdir
            for step in rest.split("&&"):
                words = shlex.split(step)
                if words[:1] == ["cd"]:
                    cwd = image.in_root(words[1]) if words[1].startswith("/") else cwd / words[1]
                else:
                    _run_step(words, cwd, image)
        elif instruction == "ENTRYPOINT":
            image.entrypoint = [str(image.in_root(w)) if w.startswith("/") else w for w in json.loads(rest)]
    image.install_s = time.perf_counter() - started
    return image


def _copy(sources: list[str], target: str, image: ImageInstall) -> None:
    destination = image.in_root(target) if target.startswith("/") else image.workdir / target
    for source in sources:
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            into = destination / origin.name if target.endswith("/") else destination
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, into)


def start_container(image: ImageInstall, command: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    """``ENTRYPOINT + command`` from the image's last WORKDIR, as Lambda starts a container image."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [*image.entrypoint, *command], cwd=image.workdir, env=image.env(**env), stdout=out, stderr=subprocess.STDOUT
        )


def stop_container(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def where_imported(image: ImageInstall, *modules: str) -> dict[str, str]:
    """The files these modules load from inside the container's environment (must be the venv's)."""
    names = json.dumps(list(modules))
    code = f"import json, importlib; print(json.dumps({{m: importlib.import_module(m).__file__ for m in {names}}}))"
    out = subprocess.run(
        [str(image.python), "-c", code], cwd=image.workdir, env=image.env(), check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout))
