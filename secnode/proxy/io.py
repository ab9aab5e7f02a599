"""Body I/O and error answers shared by the client and provider sides.

Bodies are read into a :class:`~secnode.proxy.spool.Spool` each (hashed as they arrive,
a large one spooled to a file) and written in pieces, so a message costs a bounded
amount of memory whatever its size (docs/operations.md, "Memory budget")."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from pathlib import Path

from aiohttp import StreamReader, web
from multidict import CIMultiDict

from secnode.core import errors, faults
from secnode.core.errors import XRoadError
from secnode.core.message import Body
from secnode.proxy.budget import Lease, lease_of, memory_share
from secnode.proxy.spool import MEMORY_LIMIT, Payload, Spool, new_spool

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


async def read_limited(
    request: web.Request, limit: int, spool_dir: Path | None, *, sha512: bool = False
) -> Spool:
    """Read the request body into a :class:`Spool` (hashed as it arrives; a large body
    goes to a file), within the in-flight budget.

    With ``Content-Length`` the bytes are admitted (:mod:`secnode.proxy.budget`: may
    wait, may be refused as Busy) before anything is read; a chunked body is admitted
    chunk by chunk as it streams. Up to the spool's memory limit of it counts as memory,
    the rest as spooled (:mod:`secnode.proxy.budget`). Refused without reading further
    once it exceeds ``limit`` bytes. ``sha512``: also compute X-Road's REST request hash.
    """
    lease = lease_of(request)
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large("request body", limit, length)
    if length is not None:
        await lease.take(length, memory_share(0, length, MEMORY_LIMIT))
    spool = new_spool(request, spool_dir, sha512=sha512)
    async for chunk in request.content.iter_chunked(64 * 1024):
        if spool.size + len(chunk) > limit:
            raise _too_large("request body", limit)
        if length is None:
            await lease.take(len(chunk), memory_share(spool.size, len(chunk), MEMORY_LIMIT))
        elif spool.size + len(chunk) > length:  # aiohttp holds the body to its length
            raise XRoadError(errors.BAD_REQUEST, "request body longer than its Content-Length")
        spool.write(chunk)
    if length is not None and spool.size < length:
        raise XRoadError(
            errors.BAD_REQUEST,
            f"request body ended after {spool.size} of its {length} bytes (Content-Length)",
        )
    spool.finish()
    return spool


async def read_response(
    request: web.Request,
    stream: StreamReader,
    limit: int,
    spool_dir: Path | None,
    length: int | None = None,
) -> Spool:
    """Read a response body to its end into a :class:`Spool`, charged to the request's
    lease; stop once it is longer than ``limit`` bytes.

    ``StreamReader.read(n)`` returns *up to* n bytes — whatever has arrived — so one
    call can cut a body that comes in several TCP segments short (the signature or the
    JSON then fails, or worse, a truncated body is signed): this reads to the end. The
    result is longer than ``limit`` only if the body is, so callers can refuse it.
    ``length``: the response's ``Content-Length``, charged at once.
    """
    return await read_response_chunks(
        request, stream.iter_chunked(64 * 1024), limit, spool_dir, length
    )


async def read_response_chunks(
    request: web.Request,
    chunks: AsyncIterable[bytes],
    limit: int,
    spool_dir: Path | None,
    length: int | None = None,
) -> Spool:
    """:func:`read_response` for a body given as its chunks as they arrive (the
    node-to-node client's, :meth:`secnode.proxy.peer_client.PeerResponse.chunks`)."""
    lease = lease_of(request)
    charged = length if length is not None and 0 < length <= limit else 0
    lease.charge(charged, memory_share(0, charged, MEMORY_LIMIT))
    spool = new_spool(request, spool_dir)
    async for chunk in chunks:
        spool.write(chunk)
        if spool.size > charged:
            more = spool.size - charged
            lease.charge(more, memory_share(charged, more, MEMORY_LIMIT))
            charged = spool.size
        if spool.size > limit:
            break
    spool.finish()
    return spool


def body_pieces(body: Payload) -> AsyncIterator[bytes | memoryview]:
    """``body`` as a request payload in pieces, without copying it (give the request a
    ``Content-Length``, or aiohttp sends it chunked)."""
    if isinstance(body, Spool):
        return body.pieces()
    return _memory_pieces(body)


async def _memory_pieces(body: Body) -> AsyncIterator[memoryview]:
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
    body: Payload,
    headers: Mapping[str, str] | CIMultiDict[str],
) -> web.StreamResponse:
    """Write the answer now, in pieces (see :data:`WRITE_CHUNK`), while the exchange
    still holds its lease; the handler returns the prepared response."""
    response = _Answer(status=status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    try:
        async for piece in body_pieces(body):
            await response.write(piece)
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


def parse_bytes(body: Payload, limit: int, what: str, lease: Lease | None = None) -> bytes:
    """``body`` whole, as ``bytes``, for an XML or JSON parser (SOAP, policy filtering):
    a spooled body over ``limit`` bytes (``[client] max_parse_bytes``) is refused
    rather than read into memory. ``lease``: charge the copy of a spooled body to the
    memory budget (a response: without waiting; see :func:`admit_parse` for a request)."""
    if isinstance(body, Spool):
        data = bytes(body.data(limit, what))
        if lease is not None and not body.in_memory:
            lease.charge(len(data))
        return data
    return bytes(body)


async def admit_parse(request: web.Request, body: Payload, limit: int, what: str) -> bytes:
    """A request ``body`` whole for a parser, its memory admitted first: a spooled body
    read back into memory waits for room in the memory budget (or is refused Busy) like a
    body that never left memory, before anything is logged, signed or called."""
    if isinstance(body, Spool) and not body.in_memory and len(body) <= limit:
        await lease_of(request).take(len(body))
    return parse_bytes(body, limit, what)


def sha256_of(body: Payload) -> bytes:
    """The body's SHA-256: computed while it streamed for a spool."""
    return body.sha256 if isinstance(body, Spool) else hashlib.sha256(body).digest()


def respool(request: web.Request, spool_dir: Path | None, body: Body) -> Spool:
    """A body the node made (a filtered or prepared response) as a spool of ``request``."""
    spool = new_spool(request, spool_dir)
    spool.write(body)
    spool.finish()
    return spool
