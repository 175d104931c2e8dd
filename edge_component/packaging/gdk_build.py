"""GDK's ``custom_build_command``: ``python3 -m edge_component.packaging.gdk_build`` (see gdk-config.json).

GDK CLI 1.6.2 runs the command as given (``subprocess.run(custom_build_command)``, BuildCommand.py) with
whatever ``python3`` is first on PATH, usually one without this project's packages. This launcher uses only
the standard library: it finds the project's virtualenv (``$EVS_BUILD_PYTHON``, else ``.venv`` made by
``make setup``) and runs the real build there with the same arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_python(environ: dict[str, str] | None = None) -> Path | None:
    environ = dict(os.environ) if environ is None else environ
    explicit = environ.get("EVS_BUILD_PYTHON")
    candidates = [Path(explicit)] if explicit else [ROOT / ".venv" / "bin" / "python"]
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def main(argv: list[str] | None = None) -> int:
    python = build_python()
    if python is None:
        print(
            "component build: no build environment: run `make setup` (creates .venv with the build's packages) "
            "or set EVS_BUILD_PYTHON to a python that has them",
            file=sys.stderr,
        )
        return 2
    args = [str(python), "-m", "edge_component.packaging.build", *(sys.argv[1:] if argv is None else argv)]
    os.chdir(ROOT)
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
