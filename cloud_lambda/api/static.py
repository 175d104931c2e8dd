"""The web app's files and the catalog pictures: only what a browser needs, never source or data files.

A file is served when its suffix is on the list for its folder and it resolves inside that folder;
anything else (``/__init__.py``, ``/catalog/items.jsonl``, ``..``, a NUL byte) is a plain 404.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from cloud_lambda.api.responses import error

WEBAPP_DIR = Path(__file__).resolve().parent.parent / "webapp"
WEBAPP_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


def resolve_inside(root: Path, relative: str, types: dict[str, str]) -> tuple[Path, str] | None:
    """``root/relative`` and its content type when it is an allowed file inside ``root``; else None."""
    if "\x00" in relative or not relative:
        return None
    parts = relative.split("/")
    if any(part.startswith(".") or part == "" for part in parts):  # dot files, "..", "//"
        return None
    content_type = types.get(Path(parts[-1]).suffix.lower())
    if content_type is None:
        return None
    try:
        target = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target, content_type


def _not_found(request: Request) -> Response:
    return error(404, "not_found", f"no file {request.scope['path'][:200]}")


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def api_not_found(request: Request) -> Response:
    return error(404, "not_found", f"no route for {request.scope['path'][:200]}")


async def webapp_file(request: Request) -> Response:
    root: Path = request.app.state.webapp_dir
    relative = str(request.path_params.get("path") or "index.html")
    found = resolve_inside(root, relative, WEBAPP_TYPES)
    if found is None:
        return _not_found(request)
    return FileResponse(found[0], media_type=found[1])


async def catalog_file(request: Request) -> Response:
    root: Path | None = request.app.state.catalog_dir
    found = None if root is None else resolve_inside(root, str(request.path_params["path"]), IMAGE_TYPES)
    if found is None:
        return _not_found(request)
    return FileResponse(found[0], media_type=found[1])


class PageRoute(Route):
    """A route that never claims an ``/api`` path: those are the API's to answer (404 or 405)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and is_api(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


ROUTES = [
    PageRoute("/", webapp_file, methods=["GET"]),
    PageRoute("/catalog/{path:path}", catalog_file, methods=["GET"]),
    PageRoute("/{path:path}", webapp_file, methods=["GET"]),
]
