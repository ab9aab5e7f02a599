"""The in-flight budget: how many bytes of message bodies one node process holds at once.

Without it memory grows with the number of concurrent large messages (16 bodies of
9.5 MiB raised a node's RSS by over 600 MiB). One :class:`InFlightBudget` per process
is shared by the client interface and the node-to-node interface
(``[limits] in_flight_bytes``). Each exchange holds a :class:`Lease`:

* a **request body** is admitted before it is read, by its ``Content-Length`` (a
  chunked body chunk by chunk, as it streams): if the budget has no room the request
  waits, first come first served, for up to ``[limits] busy_wait_seconds``, then is
  refused with ``Server.*.Busy`` (HTTP 500, as every X-Road server error) before
  anything was logged, signed or called. A body larger than the whole budget is
  admitted only when nothing else is in flight.
* a **response body** (from the provider node or the provider's service) is charged
  to the same budget as it is read, without waiting: the exchange has already acted
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
            f"the node is busy: {self.in_use} bytes of message bodies are in flight "
            f"(limit {self.limit}, [limits] in_flight_bytes) and this request's {size} bytes "
            f"found no room within {self.wait_seconds:g} s; try again later",
            http_status=500,
        )


@dataclass
class Lease:
    """What one exchange holds of the budget; released once, when its answer is written."""

    budget: InFlightBudget | None
    held: int = 0

    async def take(self, size: int) -> None:
        """Admit ``size`` more request bytes (may wait, may raise Busy)."""
        if self.budget is not None:
            await self.budget.acquire(size)
        self.held += size

    def charge(self, size: int) -> None:
        """Count ``size`` response bytes (never waits)."""
        if self.budget is not None:
            self.budget.charge(size)
        self.held += size

    def release(self) -> None:
        held, self.held = self.held, 0
        if self.budget is not None:
            self.budget.release(held)


LEASE = web.RequestKey("secnode_lease", Lease)


def lease_of(request: web.Request) -> Lease:
    """The request's lease; an unbounded one if the app runs without the budget."""
    lease = request.get(LEASE)
    if lease is None:
        lease = request[LEASE] = Lease(None)
    return lease


def budget_middleware(budget: InFlightBudget) -> Middleware:
    """Gives each request a :class:`Lease` of ``budget`` and releases it once the
    answer is written (the handler's response is sent here, while the bytes are held).
    Runs inside the error boundary: a Busy refusal is answered and recorded there."""

    @web.middleware
    async def hold(request: web.Request, handler: Handler) -> web.StreamResponse:
        lease = request[LEASE] = Lease(budget)
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
