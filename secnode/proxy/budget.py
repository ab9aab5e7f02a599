"""The in-flight budgets: how many bytes of message bodies one node process holds at once.

Without them memory grows with the number of concurrent large messages (16 bodies of
9.5 MiB raised a node's RSS by over 600 MiB). Each process has two
:class:`InFlightBudget`, shared by the client interface and the node-to-node interface:
**memory** (``[limits] in_flight_bytes``: the bytes of bodies held in memory, i.e. up to
256 KiB of each body, and the whole of a SOAP message parsed in memory) and **disk**
(``[limits] spool_bytes``: the rest of each large body, spooled to a file). A large
document thus takes disk room, not the memory that small messages need: one 100 MiB
transfer no longer holds back every other message. Each exchange holds a :class:`Lease`:

* a **request body** is admitted before it is read, by its ``Content-Length`` (a
  chunked body chunk by chunk, as it streams): if a budget has no room the request
  waits, first come first served, for up to ``[limits] busy_wait_seconds``, then is
  refused with ``Server.*.Busy`` (HTTP 500, as every X-Road server error) before
  anything was logged, signed or called. A body larger than a whole budget is
  admitted only when nothing else is in flight in it.
* a **response body** (from the provider node or the provider's service) is charged
  to the same budgets as it is read, without waiting: the exchange has already acted
  and refusing then would lose its answer; the charge holds back new requests instead.

The lease is released when the exchange's answer has been written
(:func:`budget_middleware`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from secnode.core import errors
from secnode.core.errors import XRoadError

log = logging.getLogger("secnode.budget")


@dataclass
class _Waiter:
    size: int
    granted: asyncio.Future[None]


@dataclass
class InFlightBudget:
    """Bytes of message bodies in flight in this process, bounded by ``limit``."""

    limit: int
    wait_seconds: float
    on_idle: Callable[[int], None] | None = None
    """Called with the burst's peak whenever the budget drains to zero (memory trimming)."""
    setting: str = "in_flight_bytes"
    """The ``[limits]`` key that sets ``limit`` (named in a Busy refusal)."""
    held_as: str = "in flight"
    in_use: int = 0
    peak: int = 0
    """The most bytes in flight at once since the budget last drained."""
    refused: int = 0
    _waiters: deque[_Waiter] = field(default_factory=deque)

    def _fits(self, size: int) -> bool:
        return self.in_use == 0 or self.in_use + size <= self.limit

    def _add(self, size: int) -> None:
        self.in_use += size
        self.peak = max(self.peak, self.in_use)

    async def acquire(self, size: int) -> None:
        """Take ``size`` bytes, waiting up to ``wait_seconds``; else raise Busy."""
        if size <= 0:
            return
        if not self._waiters and self._fits(size):
            self._add(size)
            return
        waiter = _Waiter(size, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds if self.wait_seconds > 0 else 0):
                await asyncio.shield(waiter.granted)
        except TimeoutError:
            if waiter.granted.done():  # granted at the deadline: keep it
                return
            self._drop(waiter)
            self.refused += 1
            raise self._busy(size) from None
        except asyncio.CancelledError:
            if waiter.granted.done():
                self.release(size)
            else:
                self._drop(waiter)
            raise

    def charge(self, size: int) -> None:
        """Count ``size`` bytes without waiting (a response of an exchange already made)."""
        if size > 0:
            self._add(size)

    def release(self, size: int) -> None:
        if size <= 0:
            return
        self.in_use = max(0, self.in_use - size)
        self._wake()
        if self.in_use == 0 and not self._waiters:
            peak, self.peak = self.peak, 0
            if self.on_idle is not None:
                self.on_idle(peak)

    def _drop(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        self._wake()  # a large request at the head may have held back smaller ones

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0].size):
            waiter = self._waiters.popleft()
            self._add(waiter.size)
            waiter.granted.set_result(None)

    def _busy(self, size: int) -> XRoadError:
        return XRoadError(
            errors.SERVER_PROXY_BUSY,
            f"the node is busy: {self.in_use} bytes of message bodies are {self.held_as} "
            f"(limit {self.limit}, [limits] {self.setting}) and this request's {size} bytes "
            f"found no room within {self.wait_seconds:g} s; try again later",
            http_status=500,
        )


@dataclass
class Lease:
    """What one exchange holds of the budgets; released once, when its answer is written.

    ``in_memory`` (in :meth:`take` and :meth:`charge`): how many of the bytes stay in
    memory (:func:`memory_share`); the rest are spooled and count against ``disk``.
    """

    budget: InFlightBudget | None
    disk: InFlightBudget | None = None
    held_memory: int = 0
    held_disk: int = 0

    @property
    def held(self) -> int:
        return self.held_memory + self.held_disk

    async def take(self, size: int, in_memory: int | None = None) -> None:
        """Admit ``size`` more request bytes (may wait, may raise Busy)."""
        memory = size if in_memory is None else in_memory
        if self.budget is not None:
            await self.budget.acquire(memory)
        self.held_memory += memory
        if size > memory:  # released with the rest, even if the disk part is refused
            if self.disk is not None:
                await self.disk.acquire(size - memory)
            self.held_disk += size - memory

    def charge(self, size: int, in_memory: int | None = None) -> None:
        """Count ``size`` response bytes (never waits)."""
        memory = size if in_memory is None else in_memory
        if self.budget is not None:
            self.budget.charge(memory)
        self.held_memory += memory
        if size > memory:
            if self.disk is not None:
                self.disk.charge(size - memory)
            self.held_disk += size - memory

    def release(self) -> None:
        memory, self.held_memory = self.held_memory, 0
        disk, self.held_disk = self.held_disk, 0
        if self.budget is not None:
            self.budget.release(memory)
        if self.disk is not None:
            self.disk.release(disk)


def memory_share(before: int, size: int, memory_limit: int) -> int:
    """Of ``size`` bytes added to a body that holds ``before``, how many count as memory:
    a body keeps up to ``memory_limit`` bytes in memory, the rest goes to its spool file."""
    return max(0, min(before + size, memory_limit) - min(before, memory_limit))


LEASE = web.RequestKey("secnode_lease", Lease)


def lease_of(request: web.Request) -> Lease:
    """The request's lease; an unbounded one if the app runs without the budget."""
    lease = request.get(LEASE)
    if lease is None:
        lease = request[LEASE] = Lease(None)
    return lease


def budget_middleware(budget: InFlightBudget, disk: InFlightBudget | None = None) -> Middleware:
    """Gives each request a :class:`Lease` of the budgets and releases it once the
    answer is written (the handler's response is sent here, while the bytes are held).
    Runs inside the error boundary: a Busy refusal is answered and recorded there."""

    @web.middleware
    async def hold(request: web.Request, handler: Handler) -> web.StreamResponse:
        lease = request[LEASE] = Lease(budget, disk)
        try:
            response = await handler(request)
            if not response.prepared and lease.held:
                try:
                    await response.prepare(request)
                    await response.write_eof()
                except (ConnectionError, RuntimeError) as exc:  # the caller went away
                    log.info("answer to %s not delivered: %s", request.remote, exc)
            return response
        finally:
            lease.release()

    return hold
