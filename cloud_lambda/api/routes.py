"""The HTTP API's routes: health, devices, every device's latest match (paged), match lists, query thumbnails,
photo search.

Routes read the service through ``request.app.state.service`` (a callable: the Lambda builds it once per
container, the local server and the tests hand in their own). Blocking work (Redis, inference) runs in
Starlette's thread pool, never on the event loop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from cloud_lambda.api.responses import HttpError, JsonResponse, error
from cloud_lambda.api.uploads import photo_from_body
from cloud_lambda.device_notes import HISTORY_MAX
from cloud_lambda.logs import get_logger
from cloud_lambda.matches import MatchStoreUnavailable
from cloud_lambda.search.service import PhotoModelUnavailable, SearchService
from model.contracts.thing_name import is_thing_name
from model.image_rules import ImageRejected
from model.logs import log_event

IMAGE_TYPES = ("image/jpeg", "image/png")
PAGE_DEFAULT, PAGE_MAX = 100, 500
DRAIN_MAX_BYTES = 16 * 1024 * 1024

Endpoint = Callable[[Request], Awaitable[Response]]


def _service(request: Request) -> SearchService:
    return request.app.state.service()  # type: ignore[no-any-return]


def guarded(endpoint: Callable[[Request], Awaitable[Response]]) -> Endpoint:
    """Every route answers with the JSON error shape, whatever it raised; nothing reaches the server."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpError as exc:
            return error(exc.status, exc.code, str(exc))
        except MatchStoreUnavailable as exc:
            log_event(
                get_logger(__name__), "api_unavailable", logging.ERROR, path=request.scope["path"][:200], error=str(exc)
            )
            return error(503, "unavailable", "the match store is unreachable; try again shortly")
        except Exception as exc:
            log_event(
                get_logger(__name__),
                "api_error",
                logging.ERROR,
                path=request.scope["path"][:200],
                error=f"{type(exc).__name__}: {exc}",
            )
            return error(500, "internal", "internal error (logged)")

    return run


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,6}", raw) or not low <= int(raw) <= high:
        raise HttpError(400, "bad_parameter", f"'{name}' must be an integer in {low}..{high}, got {raw[:20]!r}")
    return int(raw)


def device_param(request: Request) -> str:
    raw = str(request.path_params["device_id"])
    if not is_thing_name(raw):
        raise HttpError(400, "bad_device_id", f"device id {raw[:80]!r} is not a valid thing name")
    return raw


# --- reads ----------------------------------------------------------------------------------------------
def _health(svc: SearchService) -> tuple[int, dict[str, Any]]:
    redis_state = svc.matches.state()
    body = {
        "status": "ok" if redis_state == "ok" else "degraded",
        "model_id": svc.catalog.model_id,
        "items": len(svc.catalog.ids),
        "index": svc.catalog.manifest.index.kind,
        "redis": redis_state,
    }
    return (200 if redis_state == "ok" else 503), body


@guarded
async def health(request: Request) -> Response:
    status, body = await run_in_threadpool(lambda: _health(_service(request)))
    return JsonResponse(body, status_code=status)


def _page_params(request: Request) -> tuple[int, int]:
    limit = int_param(request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
    cursor = int_param(request, "cursor", 0, 0, 999_999)
    return cursor, limit


def _paged(items: list[dict[str, Any]], total: int, cursor: int) -> dict[str, Any]:
    end = cursor + len(items)
    return {"devices": items, "total": total, "next": str(end) if items and end < total else None}


def _page_with_notes(svc: SearchService, cursor: int, limit: int, records: bool, history: int) -> Any:
    items, total = svc.matches.page(cursor, limit, records)
    svc.notes.enrich(items, history)  # thumbnail {seq, ts}, last refusal, newest `history` records in brief
    return items, total


@guarded
async def devices(request: Request) -> Response:
    cursor, limit = _page_params(request)
    svc = await run_in_threadpool(_service, request)
    items, total = await run_in_threadpool(_page_with_notes, svc, cursor, limit, False, 0)
    return JsonResponse(_paged(items, total, cursor))


@guarded
async def latest_of_every_device(request: Request) -> Response:
    """One call for the whole dashboard: each device's status, newest record, thumbnail, last refusal and (with
    ``history=N``) its newest N records in brief, a page at a time."""
    cursor, limit = _page_params(request)
    history = int_param(request, "history", 0, 0, HISTORY_MAX)
    svc = await run_in_threadpool(_service, request)
    items, total = await run_in_threadpool(_page_with_notes, svc, cursor, limit, True, history)
    return JsonResponse(_paged(items, total, cursor))


@guarded
async def device_thumbnail(request: Request) -> Response:
    """The device's newest query thumbnail (image/jpeg); 404 when it sends none (it is opt-in)."""
    device_id = device_param(request)
    svc = await run_in_threadpool(_service, request)
    found = await run_in_threadpool(svc.notes.thumbnail, device_id)
    if found is None:
        raise HttpError(404, "not_found", f"no thumbnail from {device_id} in the last hour (thumbnail.enabled?)")
    jpeg, seq, ts = found
    return Response(jpeg, media_type="image/jpeg", headers={"x-thumbnail-seq": str(seq), "x-thumbnail-ts": str(ts)})


@guarded
async def device_matches(request: Request) -> Response:
    device_id = device_param(request)
    svc = await run_in_threadpool(_service, request)
    n = int_param(request, "n", 10, 1, svc.settings.match_list_cap)
    records = await run_in_threadpool(svc.matches.latest, device_id, n)
    return JsonResponse({"device_id": device_id, "records": records})


@guarded
async def device_latest(request: Request) -> Response:
    device_id = device_param(request)
    svc = await run_in_threadpool(_service, request)
    records = await run_in_threadpool(svc.matches.latest, device_id, 1)
    return JsonResponse({"device_id": device_id, "record": records[0] if records else None})


# --- photo search ---------------------------------------------------------------------------------------
async def read_body(request: Request, limit: int, idle_timeout_s: float) -> bytes:
    """The body, refused (413) once it passes ``limit`` and (408) when the client stops sending.

    A body declared over the limit but under :data:`DRAIN_MAX_BYTES` is read and thrown away first, so the
    client (a browser, urllib) is still sending when it could read the 413 and not a connection reset; a
    larger one is refused from the header at once.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        refusal = HttpError(413, "too_large", f"upload is {int(declared):,} bytes; the limit is {limit:,}")
        if int(declared) > DRAIN_MAX_BYTES:
            raise refusal
        async for _ in _chunks(request, idle_timeout_s):
            pass
        raise refusal
    chunks, size = [], 0
    async for chunk in _chunks(request, idle_timeout_s):
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "too_large", f"upload is over the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _chunks(request: Request, idle_timeout_s: float) -> AsyncIterator[bytes]:
    stream = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(idle_timeout_s):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise HttpError(408, "timeout", f"no request data for {idle_timeout_s:g} s") from exc
        except ClientDisconnect as exc:
            raise HttpError(400, "disconnected", "the client went away mid-upload") from exc
        yield chunk


@guarded
async def photo_search(request: Request) -> Response:
    svc = await run_in_threadpool(_service, request)
    k = int_param(request, "k", svc.settings.top_k, 1, 50)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (*IMAGE_TYPES, "multipart/form-data"):
        raise HttpError(
            415,
            "unsupported_media_type",
            "send the photo as the body (Content-Type image/jpeg or image/png) or as a multipart/form-data file"
            f" field (curl -F photo=@photo.jpg), got {content_type!r}",
        )
    body = await read_body(request, svc.settings.max_upload_bytes, request.app.state.request_timeout_s)
    if content_type == "multipart/form-data":
        body = await photo_from_body(request.headers, body, svc.settings.max_upload_bytes)
    if not body:
        raise HttpError(400, "empty", "the request body must be the image bytes")
    try:
        result = await run_in_threadpool(svc.search_photo, body, k)
    except ImageRejected as exc:
        status = 415 if exc.reason in ("unsupported_format", "not_image") else 413 if exc.reason == "too_large" else 400
        raise HttpError(status, exc.reason, str(exc)) from exc
    except PhotoModelUnavailable as exc:
        raise HttpError(503, "photo_search_unavailable", str(exc)) from exc
    return JsonResponse(result)


ROUTES = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/devices", devices, methods=["GET"]),
    Route("/api/latest", latest_of_every_device, methods=["GET"]),
    Route("/api/devices/{device_id}/matches", device_matches, methods=["GET"]),
    Route("/api/devices/{device_id}/matches/latest", device_latest, methods=["GET"]),
    Route("/api/devices/{device_id}/thumbnail", device_thumbnail, methods=["GET"]),
    Route("/api/search", photo_search, methods=["POST"]),
]
