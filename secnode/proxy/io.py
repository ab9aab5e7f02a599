"""Small aiohttp helpers shared by the client and provider sides."""

from __future__ import annotations

from aiohttp import StreamReader, web

from secnode.core import errors, faults
from secnode.core.errors import XRoadError


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing (without reading further) once it exceeds ``limit`` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise XRoadError(
            errors.MESSAGE_TOO_LARGE,
            f"request body of {length} bytes exceeds the limit of {limit} bytes",
            http_status=413,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise XRoadError(
                errors.MESSAGE_TOO_LARGE,
                f"request body exceeds the limit of {limit} bytes",
                http_status=413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def read_response(stream: StreamReader, limit: int) -> bytes:
    """Read a response body to its end, stopping once it is longer than ``limit`` bytes.

    ``StreamReader.read(n)`` returns *up to* n bytes — whatever has arrived — so one
    call can cut a body that comes in several TCP segments short (the signature or the
    JSON then fails, or worse, a truncated body is signed). The result is longer than
    ``limit`` only if the body is, so callers can refuse it.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


def error_response(exc: XRoadError, protocol: str, accept: str | None = None) -> web.Response:
    """Render an X-Road error for the interface the caller used (SOAP fault, or JSON / XML
    as the REST client's ``accept`` asks)."""
    if protocol == "soap":
        status, headers, body = faults.soap_response(exc)
        headers = {**headers, errors.ERROR_HEADER: exc.code}
    else:
        status, headers, body = faults.rest_response(exc, faults.wants_xml(accept))
    return web.Response(status=status, body=body, headers=headers)
