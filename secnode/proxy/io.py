"""Body I/O and error answers shared by the client and provider sides.

Bodies are read into one buffer each and written in pieces, so a message costs about
one copy of itself in memory (docs/operations.md, "Memory budget")."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import StreamReader, web
from multidict import CIMultiDict

from secnode.core import errors, faults
from secnode.core.errors import XRoadError
from secnode.proxy.budget import Lease, lease_of

log = logging.getLogger("secnode.io")

#: Bytes handed to the transport per write: with TLS, asyncio encrypts a whole write into
#: one buffer and copies what the socket does not take at once, so a body written in one
#: piece costs several copies of itself; in pieces, drain() holds it to one.
WRITE_CHUNK = 256 * 1024


def _too_large(what: str, limit: int, length: int | None = None) -> XRoadError:
    size = f" of {length} bytes" if length is not None else ""
    return XRoadError(
        errors.MESSAGE_TOO_LARGE,
        f"{what}{size} exceeds the limit of {limit} bytes",
        http_status=413,
    )


async def read_limited(request: web.Request, limit: int) -> bytearray:
    """Read the request body into one buffer, within the in-flight budget.

    With ``Content-Length`` the bytes are admitted (:mod:`secnode.proxy.budget`: may
    wait, may be refused as Busy) before anything is read, and the body is read into
    one preallocated buffer: one copy, whatever the number of chunks. A chunked body
    is admitted chunk by chunk as it streams. Refused without reading further once it
    exceeds ``limit`` bytes.
    """
    lease = lease_of(request)
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large("request body", limit, length)
    if length is not None:
        await lease.take(length)
        buf = bytearray(length)
        view = memoryview(buf)
        pos = 0
        while pos < length:
            chunk = await request.content.readany()
            if not chunk:
                break
            end = pos + len(chunk)
            if end > length:  # aiohttp holds the body to Content-Length; a guard, not a path
                raise XRoadError(errors.BAD_REQUEST, "request body longer than its Content-Length")
            view[pos:end] = chunk
            pos = end
        view.release()
        if pos < length:
            raise XRoadError(
                errors.BAD_REQUEST,
                f"request body ended after {pos} of its {length} bytes (Content-Length)",
            )
        return buf
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        if len(body) + len(chunk) > limit:
            raise _too_large("request body", limit)
        await lease.take(len(chunk))
        body += chunk
    return body


async def read_response(
    stream: StreamReader, limit: int, lease: Lease, length: int | None = None
) -> bytearray:
    """Read a response body to its end into one buffer, charged to ``lease``; stop
    once it is longer than ``limit`` bytes.

    ``StreamReader.read(n)`` returns *up to* n bytes — whatever has arrived — so one
    call can cut a body that comes in several TCP segments short (the signature or the
    JSON then fails, or worse, a truncated body is signed). The result is longer than
    ``limit`` only if the body is, so callers can refuse it. ``length``: the response's
    ``Content-Length``, to read into a preallocated buffer (no regrowing).
    """
    out = bytearray(length) if length is not None and 0 < length <= limit else bytearray()
    if out:
        lease.charge(len(out))
    pos = 0
    async for chunk in stream.iter_chunked(64 * 1024):
        end = pos + len(chunk)
        if end <= len(out):
            out[pos:end] = chunk
        else:
            lease.charge(end - max(pos, len(out)))
            del out[pos:]
            out += chunk
        pos = end
        if pos > limit:
            break
    if pos < len(out):
        del out[pos:]
    return out


async def body_pieces(body: bytes | bytearray) -> AsyncIterator[memoryview]:
    """``body`` as a request payload in :data:`WRITE_CHUNK` pieces, without copying it
    (give the request a ``Content-Length``, or aiohttp sends it chunked)."""
    view = memoryview(body)
    for start in range(0, len(view), WRITE_CHUNK):
        yield view[start : start + WRITE_CHUNK]


class _Answer(web.StreamResponse):
    """A streamed answer whose status line and headers go out with its first piece of
    body: one transport write (one TLS record, one ``send``) for a small message instead of
    two, and the peer wakes once (issue 14; aiohttp's own ``Response`` buffers the same way)."""

    _send_headers_immediately = False


async def send_response(
    request: web.Request,
    status: int,
    body: bytes | bytearray,
    headers: Mapping[str, str] | CIMultiDict[str],
) -> web.StreamResponse:
    """Write the answer now, in pieces (see :data:`WRITE_CHUNK`), while the exchange
    still holds its lease; the handler returns the prepared response."""
    response = _Answer(status=status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    view = memoryview(body)
    try:
        for start in range(0, len(view), WRITE_CHUNK):
            await response.write(view[start : start + WRITE_CHUNK])
        await response.write_eof()
    except ConnectionError as exc:  # the caller went away: nobody is left to answer
        log.info("answer to %s not delivered: %s", request.remote, exc)
    return response


def error_response(exc: XRoadError, protocol: str, accept: str | None = None) -> web.Response:
    """Render an X-Road error for the interface the caller used (SOAP fault, or JSON / XML
    as the REST client's ``accept`` asks)."""
    if protocol == "soap":
        status, headers, body = faults.soap_response(exc)
        headers = {**headers, errors.ERROR_HEADER: exc.code}
    else:
        status, headers, body = faults.rest_response(exc, faults.wants_xml(accept))
    return web.Response(status=status, body=body, headers=headers)
