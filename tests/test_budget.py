"""The in-flight budgets (secnode.proxy.budget): memory and spool room, on real asyncio."""

from __future__ import annotations

import asyncio

import pytest

from secnode.core.errors import XRoadError
from secnode.proxy.budget import InFlightBudget, Lease, memory_share

KIB = 1024


def test_memory_share_counts_up_to_the_spool_memory_limit() -> None:
    assert memory_share(0, 100, 256) == 100
    assert memory_share(0, 1000, 256) == 256
    assert memory_share(200, 100, 256) == 56
    assert memory_share(256, 100, 256) == 0


def test_a_spooled_body_takes_disk_room_not_memory() -> None:
    async def run() -> tuple[int, int, int, int]:
        memory = InFlightBudget(1 * KIB, 0)
        disk = InFlightBudget(100 * KIB, 0, setting="spool_bytes")
        lease = Lease(memory, disk)
        await lease.take(50 * KIB, memory_share(0, 50 * KIB, 256))
        held = memory.in_use, disk.in_use
        # a small message still finds memory room while the large one is in flight
        small = Lease(memory, disk)
        await small.take(700, 700)
        both = memory.in_use
        lease.release()
        small.release()
        return held[0], held[1], both, memory.in_use + disk.in_use

    in_memory, on_disk, with_small, after = asyncio.run(run())
    assert (in_memory, on_disk) == (256, 50 * KIB - 256)
    assert with_small == 256 + 700
    assert after == 0


def test_a_full_spool_refuses_busy_naming_its_setting() -> None:
    async def run() -> None:
        memory = InFlightBudget(1 * KIB, 0)
        disk = InFlightBudget(10 * KIB, 0, setting="spool_bytes", held_as="spooled to disk")
        first = Lease(memory, disk)
        await first.take(9 * KIB, 256)
        second = Lease(memory, disk)
        try:
            await second.take(9 * KIB, 256)
        finally:
            second.release()  # its memory part was taken: released with the lease
            assert memory.in_use == 256
            first.release()
            assert (memory.in_use, disk.in_use) == (0, 0)

    with pytest.raises(XRoadError, match=r"spooled to disk .*\[limits\] spool_bytes"):
        asyncio.run(run())


def test_a_response_is_charged_without_waiting() -> None:
    async def run() -> tuple[int, int]:
        memory = InFlightBudget(1 * KIB, 0)
        disk = InFlightBudget(1 * KIB, 0)
        lease = Lease(memory, disk)
        lease.charge(5 * KIB, 256)  # over both limits: counted, never refused
        return memory.in_use, disk.in_use

    assert asyncio.run(run()) == (256, 5 * KIB - 256)
