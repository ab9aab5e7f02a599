"""Small aiohttp helpers shared by the client and provider sides."""

from __future__ import annotations

from aiohttp import web

from secnode.core import errors
from secnode.core.errors import XRoadError


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing (without reading further) once it exceeds ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise XRoadError(errors.MESSAGE_TOO_LARGE,
                         f"request body of {length} bytes exceeds the limit of {limit} bytes",
                         http_status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise XRoadError(errors.MESSAGE_TOO_LARGE,
                             f"request body exceeds the limit of {limit} bytes", http_status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(exc: XRoadError, protocol: str) -> web.Response:
    """Render an X-Road error for the interface the caller used (SOAP fault or JSON)."""
    if protocol == "soap":
        status, headers, body = exc.soap_response()
        headers = {**headers, errors.ERROR_HEADER: exc.code}
    else:
        status, headers, body = exc.rest_response()
    return web.Response(status=status, body=body, headers=headers)
