"""The C allocator's side of the memory budget (glibc; a no-op elsewhere).

Two glibc behaviours kept a node's RSS high after a burst of large messages:

* the mmap threshold is *dynamic*: once a large block (a 9.5 MiB body) that was
  mmapped is freed, glibc raises the threshold to its size, so later bodies come
  from the heap, where freed memory stays mapped and fragments. :func:`tune_allocator`
  fixes the threshold (``mallopt(M_MMAP_THRESHOLD)``), which also turns the dynamic
  adjustment off: every body-sized block is mmapped and unmapped when freed.
* the heap (64 KiB network chunks, SQLite pages) is returned to the system only at
  its top. :func:`trim_after_burst` calls ``malloc_trim(0)`` when the in-flight
  budget drains after a burst of at least :data:`TRIM_AFTER_BYTES`.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger("secnode.memory")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 256 * 1024
"""Blocks from this size on are mmapped (glibc's default starts at 128 KiB, then grows)."""
TRIM_AFTER_BYTES = 8 * 1024 * 1024
"""A burst this large in flight is followed by ``malloc_trim``."""

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6")
            libc.mallopt  # noqa: B018 - glibc has it, musl and others do not
            libc.malloc_trim  # noqa: B018
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold (see the module docstring); False if not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


TRIM_DELAY = 1.0
"""Seconds after the budget drained: the exchanges' last objects are freed by then."""

_pending: asyncio.TimerHandle | None = None


def trim_after_burst(peak: int) -> None:
    """Give freed heap memory back to the system after a burst of ``peak`` bytes: once,
    :data:`TRIM_DELAY` after the budget drained (a new burst in between postpones it)."""
    global _pending
    if peak < TRIM_AFTER_BYTES or _glibc() is None:
        return
    if _pending is not None:
        _pending.cancel()
    _pending = asyncio.get_running_loop().call_later(TRIM_DELAY, _trim, peak)


def _trim(peak: int) -> None:
    global _pending
    _pending = None
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
        log.debug("malloc_trim after a burst of %d bytes in flight", peak)
