"""A lean HTTP/1.1 client for the one node-to-node call: ``POST /secnode/v1/exchange``.

aiohttp's ``ClientSession`` was the largest block of the client node's own CPU under
load (docs/performance.md, issue 14). This client does only what the node-to-node
exchange needs, on pooled, kept-alive mutual-TLS connections:

- **TLS** is exactly the caller's: the connection is made with the
  :class:`ssl.SSLContext` it passes (the node's pinned context,
  ``NodeRuntime.peer_ssl``: hostname checks off, the provider node's registered auth
  certificates as the only trust anchors), so a server without the pinned key fails the
  handshake (:class:`PeerTLSError`) and never sees the request.
- **The request** goes out as the request line and headers plus the body in one
  ``transport.write`` when the body is in memory; a spooled body is written in pieces
  with flow control (``pause_writing`` / ``drain``), so memory stays bounded.
- **The response** is parsed by ``httptools`` (llhttp, in C), strictly: a bad status
  line, a response with both ``Content-Length`` and ``Transfer-Encoding`` (or two
  lengths, or a transfer coding other than ``chunked``), a body delimited by the end of
  the connection, or more than :data:`MAX_HEAD_BYTES` of status line and headers is
  :class:`MalformedResponse`. Chunked bodies are decoded. No redirects, cookies or
  decompression. The body is read by the caller through :meth:`PeerResponse.chunks`,
  which stops once the body is longer than the caller's limit (reading is paused
  while the caller has not taken what arrived).
- **Connections** are pooled per (host, port, TLS context) and the most recently used
  idle one is taken first (LIFO: the others age out). One is closed after
  :data:`IDLE_SECONDS` idle, on ``Connection: close``, a parse error, a timeout, a
  response not read to its end, or a cancellation mid-exchange: a connection goes
  back to the pool only after a complete exchange, never in an unknown state.
- **Timeouts**: connecting (TCP and TLS handshake) :data:`CONNECT_SECONDS`; the whole
  exchange, to the last body byte, :data:`TOTAL_SECONDS` (:class:`TimeoutError`).

**The one retry.** A kept-alive connection can be closed by the peer at any time while
it is idle (aiohttp's server closes it after its keep-alive timeout); a request written
just then meets the end of the connection. A request on a *reused* connection is
therefore sent again, once, on a new connection, when the connection ended (EOF or a
reset) before a single byte of the response arrived. This cannot make the provider act
twice: (1) a server closes an idle connection only between requests, so a peer that
closed without answering closed before it read ours; (2) should a provider node have
read it and failed before answering, the repeated request carries the same signed
(client, message id) pair, and the provider node's replay window admits it once only
(docs/protocol.md §6.7: ``Client.DuplicateMessageId``), checked before its service is
called. A new connection is never retried, nor anything after a response byte or a
timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from secnode.proxy.io import body_pieces
from secnode.proxy.spool import Payload, Spool

#: Status line and headers of one response, at most.
MAX_HEAD_BYTES = 64 * 1024
#: An idle pooled connection is closed after this long.
IDLE_SECONDS = 60.0
CONNECT_SECONDS = 10.0
TOTAL_SECONDS = 120.0
#: Connections per (host, port, context), as aiohttp's ``limit_per_host`` was.
MAX_PER_PEER = 128
#: A body at most this large (and in memory) goes out with the head in one write.
ONE_WRITE_BYTES = 256 * 1024
#: Reading is paused while this much of the body waits for the caller.
READ_HIGH_WATER = 512 * 1024


#: A pool: the peer's host and port and the TLS context that pins it.
_Key = tuple[str, int, ssl.SSLContext]


class PeerError(Exception):
    """The exchange with the peer failed (base class)."""


class PeerTLSError(PeerError):
    """The TLS handshake failed: the peer did not present a pinned certificate (or we
    were refused)."""


class PeerConnectionError(PeerError, ConnectionError):
    """Connecting failed, or the connection ended before the response did."""


class MalformedResponse(PeerError):
    """The response is not acceptable HTTP/1.1 (see the module docstring)."""


class _StaleConnection(PeerConnectionError):
    """A reused connection ended before any response byte: see "The one retry"."""


def _check_token(text: str, what: str) -> None:
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"{what} contains CR, LF or NUL: {text!r}")


def request_head(method: str, path: str, host: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request line and headers (``Host`` and ``Connection: keep-alive`` added)."""
    _check_token(path, "request target")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        _check_token(name, "header name")
        _check_token(value, "header value")
        lines.append(f"{name}: {value}")
    lines.append("Connection: keep-alive")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class _Connection(asyncio.Protocol):
    """One TLS connection and the exchange on it (one at a time)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.reused = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._begin_exchange()

    # ----- one exchange ------------------------------------------------------------
    def _begin_exchange(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.error: BaseException | None = None
        self.got_bytes = False
        self.head_bytes = 0
        self.head_bytes_parsed = 0
        self.status = 0
        #: True from the moment a request is written until its response is complete.
        self.expecting = False
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.chunked = False
        self.lengths = 0
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None

    def reset(self) -> None:
        """Ready for the next exchange (after a complete one)."""
        self._begin_exchange()

    @property
    def usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self, error: BaseException) -> None:
        """End the exchange with ``error`` (a timeout): wake the caller, drop the connection."""
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        """Until something happens (bytes, the end of the head or body, an error)."""
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ----- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if not self.complete:
            what = f"{exc.__class__.__name__}: {exc}" if exc else "closed by the peer"
            if self.reused and not self.got_bytes:
                self._fail(_StaleConnection(f"kept-alive connection ended ({what})"))
            else:
                self._fail(PeerConnectionError(f"connection ended before the response ({what})"))
        self._fail(PeerConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        if not self.expecting:  # bytes on an idle connection: not our HTTP; drop it
            self.abort(MalformedResponse("bytes received on an idle connection"))
            return
        self.got_bytes = True
        if not self.head_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            error = cause if isinstance(cause, MalformedResponse) else MalformedResponse(str(exc))
            self.abort(error)
            return
        except httptools.HttpParserError as exc:
            self.abort(MalformedResponse(f"unparsable response: {exc}"))
            return
        if not self.head_done and self.head_bytes > MAX_HEAD_BYTES:
            self.abort(MalformedResponse(f"response head over {MAX_HEAD_BYTES} bytes"))
            return
        if self.buffered > READ_HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def drain(self) -> None:
        if self.error is not None:
            raise self.error
        if self._write_paused:
            self._drain = self.loop.create_future()
            try:
                await self._drain
            finally:
                self._drain = None
            if self.error is not None:
                raise self.error

    def take(self) -> bytes | None:
        """The next piece of body that arrived (None: none yet)."""
        if not self.body:
            return None
        piece = self.body.popleft()
        self.buffered -= len(piece)
        if self._reading_paused and self.buffered <= READ_HIGH_WATER // 2 and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
        return piece

    # ----- httptools callbacks ----------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # more after the response: the connection is out of step
            self.keep_alive = False
            raise MalformedResponse("bytes after the end of the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes_parsed += len(name) + len(value)
        if self.head_bytes_parsed > MAX_HEAD_BYTES:
            raise MalformedResponse(f"response head over {MAX_HEAD_BYTES} bytes")
        key = name.decode("utf-8", "surrogateescape")
        text = value.decode("utf-8", "surrogateescape")
        lowered = key.lower()
        if lowered == "content-length":
            self.lengths += 1
        elif lowered == "transfer-encoding":
            if self.chunked or text.strip().lower() != "chunked":
                raise MalformedResponse(f"transfer coding {text!r} is not plain chunked")
            self.chunked = True
        self.headers.add(key, text)

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self.parser.get_http_version() != "1.1":
            raise MalformedResponse(f"HTTP/{self.parser.get_http_version()} response")
        if status < 200 or status > 599:
            raise MalformedResponse(f"status {status}")
        if self.lengths > 1:
            raise MalformedResponse("several Content-Length headers")
        if self.lengths and self.chunked:
            raise MalformedResponse("both Content-Length and Transfer-Encoding")
        if not self.lengths and not self.chunked and status not in (204, 304):
            raise MalformedResponse("no Content-Length and not chunked: the body has no end")
        self.status = status
        self.keep_alive = bool(self.parser.should_keep_alive())
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.expecting = False


@dataclass
class PeerResponse:
    """A response whose head has arrived; the body is read with :meth:`chunks`."""

    status: int
    headers: CIMultiDictProxy[str]
    content_length: int | None
    _conn: _Connection
    _limit: int

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; ends once it is longer than the caller's limit (the
        connection is then closed: the rest is never read)."""
        conn, taken = self._conn, 0
        while True:
            piece = conn.take()
            if piece is not None:
                taken += len(piece)
                yield piece
                if taken > self._limit:
                    conn.keep_alive = False
                    return
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            await conn.wait()


class _Exchange:
    """``async with``: the response to one request; the connection goes back to the pool
    only if the exchange completed."""

    def __init__(self, client: PeerClient, key: _Key, head: bytes, body: Payload, limit: int):
        self.client = client
        self.key = key
        self.head = head
        self.body = body
        self.limit = limit
        self.conn: _Connection | None = None
        self.deadline: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> PeerResponse:
        head, body, limit = self.head, self.body, self.limit
        loop = asyncio.get_running_loop()
        timed_out = TimeoutError(f"no complete response within {self.client.total_seconds} s")
        expires = loop.time() + self.client.total_seconds
        try:
            for attempt in (1, 2):
                conn = await self.client._acquire(self.key, expires)
                self.conn = conn
                self.deadline = loop.call_at(expires, conn.abort, timed_out)
                try:
                    await _write(conn, head, body)
                    while not conn.head_done:
                        if conn.error is not None:
                            raise conn.error
                        await conn.wait()
                except _StaleConnection:
                    if attempt == 2:
                        raise
                    self._drop()
                    continue
                length = conn.headers.get("Content-Length")
                return PeerResponse(
                    conn.status,
                    CIMultiDictProxy(conn.headers),
                    int(length) if length is not None else None,
                    conn,
                    limit,
                )
            raise AssertionError("unreachable")
        except BaseException:
            self._drop()
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self.conn
        if exc_type is None and conn is not None and conn.complete and conn.keep_alive:
            self._cancel_deadline()
            self.client._release(self.key, conn)
            self.conn = None
            return
        self._drop()

    def _cancel_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _drop(self) -> None:
        self._cancel_deadline()
        if self.conn is not None:
            self.conn.close()
            self.client._forget(self.key, self.conn)
            self.conn = None


async def _write(conn: _Connection, head: bytes, body: Payload) -> None:
    """The request: head and a small in-memory body in one write, else the head and the
    body's pieces as the transport takes them (a spooled body is read from its file)."""
    transport = conn.transport
    if transport is None or not conn.usable:
        error = _StaleConnection if conn.reused else PeerConnectionError
        raise error("connection closed before the request was written")
    conn.expecting = True
    small = len(body) <= ONE_WRITE_BYTES
    if small and not isinstance(body, Spool):
        transport.write(head + bytes(body))
        return
    if small and isinstance(body, Spool) and body.in_memory:
        transport.write(head + body.data())
        return
    transport.write(head)
    async for piece in body_pieces(body):
        if conn.head_done or conn.error is not None:
            break  # answered (or failed) early: the rest is not wanted
        transport.write(piece)
        await conn.drain()
    if conn.head_done:  # answered before the whole request went: not at a request boundary
        conn.keep_alive = False


@dataclass
class _Peer:
    idle: list[_Connection]
    active: int = 0
    waiters: deque[asyncio.Future[None]] | None = None


class PeerClient:
    """Pooled keep-alive connections to other nodes; one :meth:`post` per exchange."""

    def __init__(
        self,
        *,
        connect_seconds: float = CONNECT_SECONDS,
        total_seconds: float = TOTAL_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
        max_per_peer: int = MAX_PER_PEER,
    ) -> None:
        self.connect_seconds = connect_seconds
        self.total_seconds = total_seconds
        self.idle_seconds = idle_seconds
        self.max_per_peer = max_per_peer
        self._peers: dict[_Key, _Peer] = {}
        self.closed = False
        self._busy: set[_Connection] = set()
        #: Connections made so far (for tests and metrics).
        self.connections_made = 0

    def post(
        self,
        host: str,
        port: int,
        ctx: ssl.SSLContext,
        path: str,
        headers: Iterable[tuple[str, str]],
        body: Payload,
        *,
        body_limit: int,
    ) -> _Exchange:
        """``async with client.post(...) as response``: POST ``body`` (give ``headers`` a
        ``Content-Length``); ``body_limit``: :meth:`PeerResponse.chunks` stops after it."""
        if self.closed:
            raise PeerConnectionError("the node-to-node client is closed")
        host_header = f"[{host}]" if ":" in host else host
        if port != 443:
            host_header += f":{port}"
        head = request_head("POST", path, host_header, headers)
        return _Exchange(self, (host, port, ctx), head, body, body_limit)

    # ----- the pool -------------------------------------------------------------------
    async def _acquire(self, key: _Key, expires: float) -> _Connection:
        """An idle connection to the peer (the most recent first), or a new one; waits
        while :attr:`max_per_peer` exchanges are in flight to it."""
        loop = asyncio.get_running_loop()
        while True:
            peer = self._peers.setdefault(key, _Peer([]))
            while peer.idle:
                conn = peer.idle.pop()  # LIFO: the warmest connection; the rest age out
                if conn.idle_timer is not None:
                    conn.idle_timer.cancel()
                    conn.idle_timer = None
                if conn.usable:
                    peer.active += 1
                    conn.reused = True
                    conn.reset()
                    self._busy.add(conn)
                    return conn
                conn.close()
            if peer.active < self.max_per_peer:
                break
            if peer.waiters is None:
                peer.waiters = deque()
            waiter = loop.create_future()
            peer.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(expires):
                    await waiter
            finally:
                with contextlib.suppress(ValueError):
                    peer.waiters.remove(waiter)
        peer.active += 1
        try:
            conn = await self._connect(key, min(expires, loop.time() + self.connect_seconds))
        except BaseException:
            self._forget(key)
            raise
        self._busy.add(conn)
        return conn

    async def _connect(self, key: _Key, until: float) -> _Connection:
        host, port, ctx = key
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(until):
                _transport, conn = await loop.create_connection(
                    lambda: _Connection(loop), host, port, ssl=ctx
                )
        except ssl.SSLError as exc:
            raise PeerTLSError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
        except TimeoutError as exc:
            raise TimeoutError(f"connecting to {host}:{port} took over the limit") from exc
        except OSError as exc:
            raise PeerConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        self.connections_made += 1
        return conn

    def _release(self, key: _Key, conn: _Connection) -> None:
        """A complete exchange: the connection waits for the next one (or is closed)."""
        peer = self._peers.get(key)
        if self.closed or peer is None or not conn.usable:
            conn.close()
            self._forget(key, conn)
            return
        self._busy.discard(conn)
        peer.active -= 1
        conn.reset()
        conn.idle_timer = asyncio.get_running_loop().call_later(
            self.idle_seconds, self._expire, key, conn
        )
        peer.idle.append(conn)
        self._wake(peer)

    def _forget(self, key: _Key, conn: _Connection | None = None) -> None:
        """An active connection was closed (or never made): room for another."""
        if conn is not None:
            self._busy.discard(conn)
        peer = self._peers.get(key)
        if peer is None:
            return
        peer.active = max(0, peer.active - 1)
        self._wake(peer)
        if not peer.active and not peer.idle and not peer.waiters:
            del self._peers[key]

    def _wake(self, peer: _Peer) -> None:
        while peer.waiters:
            waiter = peer.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _expire(self, key: _Key, conn: _Connection) -> None:
        conn.idle_timer = None
        conn.close()
        peer = self._peers.get(key)
        if peer is not None and conn in peer.idle:
            peer.idle.remove(conn)
            if not peer.active and not peer.idle and not peer.waiters:
                del self._peers[key]

    def close_idle(self) -> None:
        """Close every idle connection (exchanges in flight finish on theirs)."""
        for peer in self._peers.values():
            while peer.idle:
                peer.idle.pop().close()

    async def close(self, *, abort: bool = False) -> None:
        """No new exchanges; idle connections are closed, and those in flight once their
        exchange is done (``abort``: at once, the node is stopping)."""
        self.closed = True
        self.close_idle()
        if abort:
            for conn in list(self._busy):
                conn.abort(PeerConnectionError("the node-to-node client was closed"))
        await asyncio.sleep(0)

    @property
    def idle_count(self) -> int:
        return sum(len(p.idle) for p in self._peers.values())

    @property
    def active_count(self) -> int:
        """Exchanges in flight."""
        return len(self._busy)
