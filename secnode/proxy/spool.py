"""A message body as it streams through the node: hashed as it arrives, spooled to a file.

The signature covers the body's SHA-256 and travels in the HTTP headers, ahead of the
body (docs/protocol.md, "Large bodies"), and the provider node must verify it before its
service acts. So a node cannot forward a body before it has seen all of it: it
**spools** it. A :class:`Spool` keeps up to :data:`MEMORY_LIMIT` bytes in memory; a
larger body goes to a file in the node's spool directory, written as it arrives, and is
sent on from there in :data:`secnode.proxy.io.WRITE_CHUNK` pieces. The SHA-256 (and, for
a REST request on the client node, the SHA-512 of X-Road's request hash) is computed
chunk by chunk, so a large body is never held whole just to be signed, logged or
hashed: a message costs about ``MEMORY_LIMIT`` plus a few chunks of memory, whatever its
size. The spool file is removed when the exchange ends (:func:`close_spools`); the
message log links it into its content-addressed body store before its record commits
(:mod:`secnode.messagelog.bodyfiles`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from secnode.core import errors
from secnode.core.errors import XRoadError
from secnode.core.message import Body

log = logging.getLogger("secnode.spool")

#: A body up to this size stays in memory (and in its log row); larger ones go to a file.
MEMORY_LIMIT = 256 * 1024
#: Bytes read back from a spool file per piece sent.
READ_PIECE = 256 * 1024


class Spool:
    """One body, hashed as it is written; in memory up to :data:`MEMORY_LIMIT`, else a file."""

    def __init__(self, directory: Path | None, *, sha512: bool = False) -> None:
        self.directory = directory
        self.size = 0
        self._buf = bytearray()
        self._file: BinaryIO | None = None
        self.path: Path | None = None
        self._sha256 = hashlib.sha256()
        self._sha512 = hashlib.sha512() if sha512 else None
        self._digest: bytes | None = None

    @classmethod
    def of(cls, body: Body) -> Spool:
        """A finished in-memory spool holding ``body`` (small bodies made by the node)."""
        spool = cls(None)
        spool.write(body)
        spool.finish()
        return spool

    # ----- writing ---------------------------------------------------------------------
    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        assert self._digest is None, "the spool is finished"
        self._sha256.update(chunk)
        if self._sha512 is not None:
            self._sha512.update(chunk)
        self.size += len(chunk)
        if self._file is None and len(self._buf) + len(chunk) <= MEMORY_LIMIT:
            self._buf += chunk
            return
        if self._file is None:
            self._open_file()
        assert self._file is not None
        self._file.write(chunk)

    def _open_file(self) -> None:
        """Move what is buffered into a new spool file; later chunks go there directly."""
        if self.directory is not None:  # None: the system's temporary directory (tools, tests)
            self.directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="body-", dir=self.directory)
        self._file = os.fdopen(fd, "w+b")
        self.path = Path(name)
        self._file.write(self._buf)
        self._buf = bytearray()

    def finish(self) -> None:
        """The body is complete: fix its digests, flush the file for reading back."""
        if self._digest is None:
            self._digest = self._sha256.digest()
            if self._file is not None:
                self._file.flush()

    # ----- reading ---------------------------------------------------------------------
    @property
    def sha256(self) -> bytes:
        assert self._digest is not None, "the spool is not finished"
        return self._digest

    @property
    def sha512(self) -> bytes | None:
        """SHA-512 of the body, if asked for at creation (X-Road's REST request hash)."""
        return None if self._sha512 is None else self._sha512.digest()

    @property
    def in_memory(self) -> bool:
        return self._file is None

    def __len__(self) -> int:
        return self.size

    def data(self, limit: int | None = None, what: str = "body") -> bytearray:
        """The whole body in memory (for XML parsing, JSON filtering); a spooled body
        over ``limit`` bytes is refused rather than read in."""
        if self._file is None:
            return self._buf
        if limit is not None and self.size > limit:
            raise XRoadError(
                errors.MESSAGE_TOO_LARGE,
                f"{what} of {self.size} bytes is too large to be parsed (limit {limit} bytes)",
                http_status=413,
            )
        out = bytearray(self.size)
        with open(self._file.fileno(), "rb", closefd=False) as f:
            f.seek(0)
            f.readinto(out)
        return out

    async def pieces(self) -> AsyncIterator[bytes | memoryview]:
        """The body in pieces for a request or response payload (give it a Content-Length)."""
        if self._file is None:
            view = memoryview(self._buf)
            for start in range(0, len(view), READ_PIECE):
                yield view[start : start + READ_PIECE]
            return
        offset = 0
        fd = self._file.fileno()
        while offset < self.size:
            piece = os.pread(fd, min(READ_PIECE, self.size - offset), offset)
            if not piece:
                raise OSError(f"spool file {self.path} ended after {offset} bytes")
            offset += len(piece)
            yield piece

    def close(self) -> None:
        """Remove the spool file (the log's body file, if any, is a link of its own)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self.path = None
        self._buf = bytearray()


#: A body as the proxy hands it on: a spool (read from a peer) or bytes (made here).
Payload = Body | Spool

SPOOLS = web.RequestKey("secnode_spools", list)


def new_spool(request: web.Request, directory: Path | None, *, sha512: bool = False) -> Spool:
    """A spool that is removed when ``request``'s exchange ends (:func:`close_spools`)."""
    spool = Spool(directory, sha512=sha512)
    spools = request.get(SPOOLS)
    if spools is None:
        spools = request[SPOOLS] = []
    spools.append(spool)
    return spool


def close_spools(request: web.Request) -> None:
    """Remove every spool file of ``request`` (once its answer and its records are done)."""
    for spool in request.pop(SPOOLS, ()):
        try:
            spool.close()
        except OSError as exc:
            log.warning("could not remove spool file %s: %s", spool.path, exc)


#: A spool file older than this is left over from a process that died (SIGKILL, power
#: loss): no exchange lives that long (the longest timeout is a service's, minutes).
STALE_SECONDS = 3600


def sweep(directory: Path, older_than: float = STALE_SECONDS) -> int:
    """Remove spool files left by a dead process; returns how many. Age-based, so a worker
    starting next to running ones (``serve --workers``) never takes their live files."""
    removed = 0
    cutoff = time.time() - older_than
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return 0
    for path in entries:
        try:
            if path.name.startswith("body-") and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    if removed:
        log.warning("removed %d spool files left by a process that stopped", removed)
    return removed
