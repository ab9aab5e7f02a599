"""The body spool (hash while streaming, spill to a file) and the log's body-file store."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from secnode.core.errors import XRoadError
from secnode.messagelog.bodyfiles import BodyStore
from secnode.proxy.spool import MEMORY_LIMIT, STALE_SECONDS, Spool, sweep


def fill(spool: Spool, data: bytes, chunk: int = 64 * 1024) -> None:
    for start in range(0, len(data), chunk):
        spool.write(data[start : start + chunk])
    spool.finish()


async def collect(spool: Spool) -> bytes:
    return b"".join([bytes(p) async for p in spool.pieces()])


def test_a_small_body_stays_in_memory_with_both_digests(tmp_path: Path) -> None:
    data = os.urandom(MEMORY_LIMIT)
    spool = Spool(tmp_path / "spool", sha512=True)
    fill(spool, data)
    assert spool.in_memory and spool.path is None and not (tmp_path / "spool").exists()
    assert spool.sha256 == hashlib.sha256(data).digest()
    assert spool.sha512 == hashlib.sha512(data).digest()
    assert bytes(spool.data()) == data and len(spool) == len(data)
    assert asyncio.run(collect(spool)) == data


def test_a_large_body_goes_to_a_file_and_is_removed_on_close(tmp_path: Path) -> None:
    data = os.urandom(MEMORY_LIMIT * 3 + 17)
    spool = Spool(tmp_path / "spool")
    fill(spool, data)
    assert not spool.in_memory and spool.path is not None
    path = spool.path
    assert path.read_bytes() == data and spool.sha256 == hashlib.sha256(data).digest()
    assert asyncio.run(collect(spool)) == data
    assert bytes(spool.data(limit=len(data))) == data
    with pytest.raises(XRoadError, match="too large to be parsed"):
        spool.data(limit=len(data) - 1, what="SOAP message")
    spool.close()
    assert not path.exists()


def test_the_body_store_links_the_spool_durably_and_once(tmp_path: Path) -> None:
    data = os.urandom(MEMORY_LIMIT * 2)
    spool = Spool(tmp_path / "spool")
    fill(spool, data)
    store = BodyStore(tmp_path / "messagelog-bodies")
    final = store.put(spool)
    name = hashlib.sha256(data).hexdigest()
    assert final == tmp_path / "messagelog-bodies" / "sha256" / name[:2] / name
    assert final.read_bytes() == data
    assert final.stat().st_nlink == 2  # a hard link of the spool file: no copy
    assert store.put(spool) == final  # content-addressed: stored once
    spool.close()
    assert final.read_bytes() == data and final.stat().st_nlink == 1
    assert [p.name for p in final.parent.iterdir()] == [name]  # no temporary left


def test_sweep_removes_only_stale_spool_files(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    stale, fresh, other = directory / "body-old", directory / "body-new", directory / "keep"
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    old = time.time() - 2 * STALE_SECONDS
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    assert sweep(directory) == 1
    assert not stale.exists() and fresh.exists() and other.exists()
    assert sweep(tmp_path / "absent") == 0


def test_spool_and_body_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    try:
        fill(spool, os.urandom(MEMORY_LIMIT + 1))
        assert spool.path is not None and spool.path.stat().st_mode & 0o777 == 0o600
        final = BodyStore(tmp_path / "messagelog-bodies").put(spool)
        assert final.stat().st_mode & 0o777 == 0o600
    finally:
        spool.close()  # the spool file's descriptor, as the proxy closes it after an exchange
