"""The node-to-node HTTP/1.1 client (secnode/proxy/peer_client.py) against real servers.

Every server here listens on 127.0.0.1 with mutual TLS on fixture certificates: an
aiohttp server for well-behaved peers, and a raw asyncio TLS server writing exact bytes
for the misbehaving ones. The client's context is the node's own pinned context
(``pinned_client_context``), as ``NodeRuntime.peer_ssl`` builds it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from secnode.proxy import peer_client
from secnode.proxy.peer_client import (
    MalformedResponse,
    PeerClient,
    PeerConnectionError,
    PeerTLSError,
)
from secnode.proxy.spool import Spool
from secnode.trust.tls import pinned_client_context

PASS = b"fixture-passphrase"
PATH = "/secnode/v1/exchange"
MiB = 1024 * 1024


def _write(path: Path, cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASS),
        )
    )
    return cert


class World:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.client_cert = _write(base / "client", "client node")
        self.server_cert = _write(base / "provider", "provider node")
        self.stranger_cert = _write(base / "stranger", "stranger")

    def client_ctx(self, pinned: x509.Certificate | None = None) -> ssl.SSLContext:
        return pinned_client_context(
            self.base / "client.pem", self.base / "client.key", PASS, pinned or self.server_cert
        )

    def server_ctx(self, name: str = "provider") -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.base / f"{name}.pem", self.base / f"{name}.key", PASS)
        ctx.verify_mode = ssl.CERT_REQUIRED  # mutual: the client node's certificate
        ctx.load_verify_locations(
            cadata=self.client_cert.public_bytes(serialization.Encoding.PEM).decode()
        )
        return ctx


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def aiohttp_peer(world: World, handler: Handler, **kw: object) -> AsyncIterator[int]:
    app = web.Application(client_max_size=64 * MiB)
    app.router.add_post(PATH, handler)
    runner = web.AppRunner(app, **kw)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=world.server_ctx())
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_peer(world: World, handler: RawHandler, name: str = "provider") -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=world.server_ctx(name))
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


async def call(
    client: PeerClient,
    port: int,
    ctx: ssl.SSLContext,
    body: bytes | Spool = b"hello",
    limit: int = 64 * MiB,
) -> tuple[int, CIMultiDict[str], bytes]:
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
    async with client.post("127.0.0.1", port, ctx, PATH, headers, body, body_limit=limit) as r:
        out = b"".join([piece async for piece in r.chunks()])
        return r.status, CIMultiDict(r.headers), out


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


# ----- well-behaved peers -----------------------------------------------------------------
def test_connection_is_kept_alive_and_reused(world: World) -> None:
    peers: set[object] = set()

    async def echo(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        assert request.headers["Connection"] == "keep-alive"
        assert request.headers["Host"] == f"127.0.0.1:{request.url.port}"
        return web.Response(body=await request.read(), headers={"X-Seen": "yes"})

    async def go() -> None:
        async with aiohttp_peer(world, echo) as port:
            client, ctx = PeerClient(), world.client_ctx()
            for n in range(10):
                status, headers, out = await call(client, port, ctx, f"message {n}".encode())
                assert (status, out, headers["x-seen"]) == (200, f"message {n}".encode(), "yes")
            assert len(peers) == 1 and client.connections_made == 1
            assert client.idle_count == 1
            await client.close()
            assert client.idle_count == 0

    run(go())


def test_chunked_response_is_decoded(world: World) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for n in range(5):
            await resp.write(f"part{n};".encode() * 1000)
        await resp.write_eof()
        return resp

    async def go() -> None:
        async with aiohttp_peer(world, chunked) as port:
            client, ctx = PeerClient(), world.client_ctx()
            for _ in range(2):  # and the connection stays usable after a chunked body
                status, headers, out = await call(client, port, ctx)
                assert status == 200 and headers["Transfer-Encoding"] == "chunked"
                assert out == b"".join(f"part{n};".encode() * 1000 for n in range(5))
            assert client.connections_made == 1
            await client.close()

    run(go())


def test_large_spooled_body_streams_in_bounded_memory(world: World, tmp_path: Path) -> None:
    size = 20 * MiB
    spool = Spool(tmp_path)
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(size // len(block)):
        spool.write(block)
    spool.finish()
    assert not spool.in_memory

    async def digest(request: web.Request) -> web.Response:
        h, n = hashlib.sha256(), 0
        async for piece in request.content.iter_chunked(256 * 1024):
            h.update(piece)
            n += len(piece)
        return web.Response(body=f"{n} {h.hexdigest()}".encode())

    async def go() -> None:
        async with aiohttp_peer(world, digest) as port:
            client, ctx = PeerClient(), world.client_ctx()
            tracemalloc.start()
            try:
                status, _, out = await call(client, port, ctx, spool)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert status == 200 and out == f"{size} {spool.sha256.hex()}".encode()
            # the server's side is in this process too: both together stay far below 20 MiB
            assert peak < 6 * MiB, peak
            await client.close()

    run(go())
    spool.close()


def test_body_over_the_limit_stops_reading(world: World) -> None:
    async def big(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"x" * (8 * MiB))

    async def go() -> None:
        async with aiohttp_peer(world, big) as port:
            client, ctx = PeerClient(), world.client_ctx()
            status, _, out = await call(client, port, ctx, limit=100_000)
            # stopped right after the limit, far before the 8 MiB; the connection is dropped
            assert status == 200 and 100_000 < len(out) < 2 * MiB
            assert client.idle_count == 0 and client.active_count == 0
            await call(client, port, ctx, limit=100 * MiB)
            assert client.connections_made == 2
            await client.close()

    run(go())


def test_unpinned_server_certificate_is_refused(world: World) -> None:
    requests = 0

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await reader.read(1)
        requests += 1

    async def go() -> None:
        async with raw_peer(world, never, name="stranger") as port:
            client = PeerClient()
            with pytest.raises(PeerTLSError, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed"):
                await call(client, port, world.client_ctx())
            assert requests == 0 and client.active_count == 0

    run(go())


# ----- misbehaving peers ------------------------------------------------------------------
def _answer(raw: bytes) -> RawHandler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(raw)
        await writer.drain()
        await reader.read(1)  # hold the connection open: the client must decide

    return handler


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            "Content-Length|Transfer-Encoding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            "Content-Length",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "transfer coding"),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the connection ends", "no Content-Length and not chunked"),
        (b"HTTQ/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "unparsable response"),
        (b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", "unparsable response|status"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n", "head over 65536"),
    ],
    ids=["cl-and-te", "two-lengths", "gzip-te", "eof-body", "bad-line", "bad-status", "huge"],
)
def test_malformed_response_is_refused(world: World, raw: bytes, why: str) -> None:
    async def go() -> None:
        async with raw_peer(world, _answer(raw)) as port:
            client = PeerClient()
            with pytest.raises(MalformedResponse, match=why):
                await call(client, port, world.client_ctx())
            assert client.idle_count == 0 and client.active_count == 0

    run(go())


def test_oversized_head_in_small_pieces_is_refused(world: World) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for n in range(10_000):  # many small headers: the parser never sees one huge line
            writer.write(f"X-H{n}: {'v' * 20}\r\n".encode())
            if n % 100 == 0:
                await writer.drain()
        await reader.read(1)

    async def go() -> None:
        async with raw_peer(world, trickle) as port:
            with pytest.raises(MalformedResponse, match="head over 65536 bytes"):
                await call(PeerClient(), port, world.client_ctx())

    run(go())


def test_hanging_server_hits_the_timeout(world: World) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")  # and never more
        await writer.drain()
        await asyncio.sleep(30)

    async def go() -> None:
        async with raw_peer(world, hang) as port:
            client = PeerClient(total_seconds=0.5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TimeoutError, match=r"no complete response within 0\.5 s"):
                await call(client, port, world.client_ctx())
            assert loop.time() - started < 5
            assert client.active_count == 0

    run(go())


def test_connect_timeout(world: World) -> None:
    async def go() -> None:
        writers: list[asyncio.StreamWriter] = []

        async def silent(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)  # no TLS here: the handshake never completes

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            client = PeerClient(connect_seconds=0.3)
            with pytest.raises(TimeoutError, match=r"connecting to 127\.0\.0\.1"):
                await call(client, port, world.client_ctx())
        finally:
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()

    run(go())


def test_server_closing_an_idle_connection_is_retried_once(world: World) -> None:
    served = 0

    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers one request per connection, keep-alive announced, then closes it as soon
        as the next request arrives (the keep-alive race, made certain)."""
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read(1)  # the next request's first byte: close without answering

    async def go() -> None:
        async with raw_peer(world, one_then_close) as port:
            client, ctx = PeerClient(), world.client_ctx()
            assert (await call(client, port, ctx))[2] == b"ok"
            assert client.idle_count == 1
            assert (await call(client, port, ctx))[2] == b"ok"  # retried on a new connection
            assert served == 2 and client.connections_made == 2

    run(go())


def test_a_new_connection_closed_without_an_answer_is_not_retried(world: World) -> None:
    seen = 0

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        await read_request(reader)
        seen += 1  # read it, then die without a word: the provider may have acted

    async def go() -> None:
        async with raw_peer(world, close_at_once) as port:
            client = PeerClient()
            with pytest.raises(PeerConnectionError, match="connection ended before the response"):
                await call(client, port, world.client_ctx())
            assert seen == 1 and client.connections_made == 1

    run(go())


def test_idle_connection_is_closed_after_the_idle_time(world: World) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    async def go() -> None:
        async with aiohttp_peer(world, ok) as port:
            client = PeerClient(idle_seconds=0.2)
            await call(client, port, world.client_ctx())
            assert client.idle_count == 1
            await asyncio.sleep(0.5)
            assert client.idle_count == 0
            await call(client, port, world.client_ctx())
            assert client.connections_made == 2
            await client.close()

    run(go())


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        # bytes after a complete response: it stands, the connection is out of step
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
    ],
    ids=["connection-close", "bytes-after-the-response"],
)
def test_connection_is_not_pooled_after(world: World, raw: bytes) -> None:
    async def go() -> None:
        async with raw_peer(world, _answer(raw)) as port:
            client = PeerClient()
            assert (await call(client, port, world.client_ctx()))[2] == b"ok"
            assert client.idle_count == 0 and client.active_count == 0

    run(go())


def test_cancelled_exchange_drops_its_connection(world: World) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.Response(body=b"late")

    async def go() -> None:
        async with aiohttp_peer(world, slow, shutdown_timeout=0.1) as port:
            client = PeerClient()
            task = asyncio.ensure_future(call(client, port, world.client_ctx()))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError, match=r"^$"):
                await task
            assert client.idle_count == 0 and client.active_count == 0

    run(go())


def test_limits_are_as_documented() -> None:
    assert peer_client.CONNECT_SECONDS == 10 and peer_client.TOTAL_SECONDS == 120
    assert peer_client.IDLE_SECONDS == 60 and peer_client.MAX_HEAD_BYTES == 64 * 1024


def test_connections_per_peer_are_limited(world: World) -> None:
    peers: set[object] = set()

    async def slowish(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        await asyncio.sleep(0.05)
        return web.Response(body=await request.read())

    async def go() -> None:
        async with aiohttp_peer(world, slowish) as port:
            client, ctx = PeerClient(max_per_peer=2), world.client_ctx()
            bodies = [f"m{n}".encode() for n in range(8)]
            results = await asyncio.gather(*(call(client, port, ctx, b) for b in bodies))
            assert [out for _, _, out in results] == bodies
            assert client.connections_made == 2 and len(peers) == 2
            await client.close()

    run(go())


def test_keep_alive_and_large_body_under_uvloop(world: World, tmp_path: Path) -> None:
    """The nodes run on uvloop, whose TLS transport is its own class."""
    uvloop = pytest.importorskip("uvloop")
    spool = Spool(tmp_path)
    spool.write(b"z" * (3 * MiB))
    spool.finish()

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def go() -> None:
        async with aiohttp_peer(world, echo) as port:
            client, ctx = PeerClient(), world.client_ctx()
            for body in (b"small", spool, b"small again"):
                status, _, out = await call(client, port, ctx, body)
                assert status == 200 and len(out) == len(body)
            assert client.connections_made == 1
            await client.close()

    uvloop.run(go())
    spool.close()
