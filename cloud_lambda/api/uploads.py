"""A photo sent as ``multipart/form-data`` (``curl -F photo=@x.jpg``, an HTML form): the one file part's bytes.

The body was already read within the upload limit (``routes.read_body``); it is parsed here with Starlette's
``MultiPartParser`` (python-multipart underneath), allowing one file and a few small fields, so a form with a
text field or two still works and anything larger is refused with the API's error shape.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cloud_lambda.api.responses import HttpError

MAX_FIELDS = 8


async def photo_from_body(headers: Headers, body: bytes, limit: int) -> bytes:
    """The bytes of the single file part of ``body``; HttpError 400 when there is not exactly one."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(headers, stream(), max_files=1, max_fields=MAX_FIELDS, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise HttpError(400, "bad_multipart", f"multipart/form-data body not understood: {exc.message}") from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    try:
        if len(files) != 1:
            raise HttpError(400, "bad_multipart", f"send exactly one file field with the photo, got {len(files)}")
        return await files[0].read()
    finally:
        await form.close()
