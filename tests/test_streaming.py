"""Issue 14 item 3: a 100 MiB REST body streams through both nodes with bounded memory.

Real node processes (Takamatsu's portal -> Aizu's echo service, so the body crosses
both nodes twice: request and echoed response). Each node hashes the body as it
arrives and spools it to a file (docs/protocol.md, "Large bodies"); the message log
keeps it as a content-addressed body file, made durable before its record commits,
and ``secnode log verify`` re-hashes it. Memory is the nodes' own ``/proc``
accounting (:class:`tests.test_memory_budget.PeakMeter`).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import time
import tracemalloc
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, select

from secnode.core.identifiers import SubsystemId
from secnode.messagelog import tables
from tests.support.common import wait_until
from tests.support.logfed import (
    AIZU,
    TAKAMATSU,
    LogFederation,
    anchors_pem,
    auditor_cli,
    build_log_federation,
    log_cli,
    verify_json,
)
from tests.support.memory import PeakMeter, pids, proc_status

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
BODY_SIZE = 100 * MIB
RISE_LIMIT_MIB = 40
SPOOLED = 256 * 1024  # secnode.proxy.spool.MEMORY_LIMIT: larger bodies become body files
ARCHIVED_SIZE = 20 * MIB
PYTHON_PEAK_MIB = 16


@dataclass
class Peak:
    mib: float = 0.0


@contextmanager
def python_peak() -> Iterator[Peak]:
    """The peak of this process's Python allocations during the block (tracemalloc): what
    an in-process ``secnode log`` command holds at most."""
    peak = Peak()
    tracemalloc.start()
    try:
        yield peak
        peak.mib = tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def lf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogFederation]:
    fed = build_log_federation(
        tmp_path_factory.mktemp("stream") / "fed",
        node_config={"messagelog": {"archive_interval": 0}, "limits": {"busy_wait_seconds": 300}},
    )
    try:
        fed.start_nodes()
        yield fed
    finally:
        fed.close()


def body_file(node_dir: Path, digest: str) -> Path:
    return node_dir / "messagelog-bodies" / "sha256" / digest[:2] / digest


def file_rows(node_dir: Path, digest: bytes) -> list[tuple[str, int, str, object, object]]:
    """(direction, seq, record id, body, body_file) of the records of body ``digest``."""
    with sqlite3.connect(node_dir / "messagelog.db") as conn:
        return list(
            conn.execute(
                "SELECT direction, seq, record_id, body, body_file FROM mlog_records"
                " WHERE body_sha256 = ? ORDER BY seq",
                (digest,),
            )
        )


def verify(lf: LogFederation, node: str) -> dict[str, object]:
    handle = lf.aizu if node == AIZU else lf.takamatsu
    _code, report = verify_json(handle)
    return report


def test_a_100_mib_body_streams_through_both_nodes_in_bounded_memory(lf: LogFederation) -> None:
    warm = lf.call(os.urandom(2 * MIB), timeout=120)  # every code path warmed up, spooled once
    assert warm.status == 200, warm.body[:300]
    time.sleep(2)
    body = os.urandom(BODY_SIZE)
    digest = hashlib.sha256(body).digest()
    procs = pids(lf)
    idle = {name: proc_status(pid, "VmRSS") for name, pid in procs.items()}
    meters = {name: PeakMeter(pid) for name, pid in procs.items()}
    for meter in meters.values():
        meter.__enter__()
    try:
        reply = lf.call(body, timeout=600)
    finally:
        for meter in meters.values():
            meter.__exit__()
    assert reply.status == 200, reply.body[:500]
    assert hashlib.sha256(reply.body).digest() == digest  # byte-identical, both ways
    del body
    for name, meter in meters.items():
        rise = meter.peak - idle[name]
        assert rise < RISE_LIMIT_MIB, f"{name}: RSS rose by {rise} MiB for one 100 MiB message"
    for handle, directions in (
        (lf.takamatsu, {"request_out", "response_in"}),
        (lf.aizu, {"request_in", "response_out"}),
    ):
        rows = file_rows(handle.dir, digest)
        assert {r[0] for r in rows} == directions, rows
        assert all(r[3] is None and r[4] == 1 for r in rows), "kept as a body file, not a row"
        stored = body_file(handle.dir, digest.hex())
        assert stored.stat().st_size == BODY_SIZE
        assert list((handle.dir / "spool").iterdir()) == []  # spool files removed
    for name in (AIZU, TAKAMATSU):
        text = lf.fed.log(f"node-{name}")
        assert "Traceback" not in text and "InternalError" not in text, text[-3000:]


def test_asic_streams_the_evidence_of_a_100_mib_exchange(lf: LogFederation, tmp_path: Path) -> None:
    """``/asic`` of an exchange with a 100 MiB body: the bundle is written to a spool file
    (the body streamed from its body file), read back and sent from that file a piece at
    a time, then removed; the client node's RSS barely moves (built in memory, the body
    was held about four times over), and the download verifies offline."""
    body = os.urandom(BODY_SIZE)
    digest = hashlib.sha256(body).hexdigest()
    reply = lf.call(body, timeout=600)
    assert reply.status == 200 and hashlib.sha256(reply.body).hexdigest() == digest
    del body
    reply.body = b""
    client = SubsystemId.parse(lf.takamatsu.client_id)  # the portal made the exchange
    query = urlencode(
        {
            "queryId": reply.message_id,
            "xRoadInstance": client.instance,
            "memberClass": client.member_class,
            "memberCode": client.code,
            "subsystemCode": client.subsystem,
            "force": "true",  # stamp the records now rather than wait for the next round
        }
    )
    pid = pids(lf)[TAKAMATSU]
    time.sleep(1)
    idle = proc_status(pid, "VmRSS")
    path = tmp_path / "evidence.bundle"
    url = f"{lf.takamatsu.client_url}/asic?{query}"
    with (
        PeakMeter(pid) as meter,
        urllib.request.urlopen(url, timeout=600) as resp,
        open(path, "wb") as fh,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/vnd.secnode.evidence-bundle"
        assert int(resp.headers["Content-Length"]) > BODY_SIZE
        shutil.copyfileobj(resp, fh, MIB)
    rise = meter.peak - idle
    assert rise < RISE_LIMIT_MIB, f"RSS rose by {rise} MiB to send a 100 MiB-body bundle"
    assert list((lf.takamatsu.dir / "spool").iterdir()) == []  # the bundle file is gone
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo(f"bodies/{digest}").file_size == BODY_SIZE
    anchors = anchors_pem(lf, tmp_path / "anchors.pem")
    out = auditor_cli("verify", path, "--anchor", anchors, "--json")
    report = json.loads(out.stdout)
    assert out.exit_code == 0 and report["ok"] is True, report["failures"]
    assert report["checked"]["records"] == 2 and report["checked"]["bodies"] == 2


def test_verify_rehashes_body_files_and_names_the_record(lf: LogFederation) -> None:
    body = os.urandom(3 * MIB)
    digest = hashlib.sha256(body).digest()
    reply = lf.call(body, timeout=120)
    assert reply.status == 200 and reply.body == body
    wait_until(lambda: verify(lf, AIZU)["ok"] is True, 60, "Aizu's log verifies")
    report = verify(lf, AIZU)
    checked = report["checked"]
    assert isinstance(checked, dict) and checked["bodies"] >= 2
    rows = file_rows(lf.aizu.dir, digest)
    stored = body_file(lf.aizu.dir, digest.hex())
    original = stored.read_bytes()
    try:
        with open(stored, "r+b") as f:  # one byte changed, size kept
            f.seek(len(original) // 2)
            f.write(bytes([original[len(original) // 2] ^ 1]))
        report = verify(lf, AIZU)
        assert report["ok"] is False
        failures = report["failures"]
        assert isinstance(failures, list)
        named = {f["record_id"] for f in failures if "body file" in f["message"]}
        assert named == {r[2] for r in rows}, failures  # request_in and response_out
        stored.unlink()
        report = verify(lf, AIZU)
        assert report["ok"] is False
        assert any("is missing" in f["message"] for f in report["failures"])  # type: ignore[union-attr]
    finally:
        stored.write_bytes(original)
    assert verify(lf, AIZU)["ok"] is True


def test_a_small_body_stays_in_its_row(lf: LogFederation) -> None:
    body = b'{"small":"' + b"s" * 1000 + b'"}'
    reply = lf.call(body)
    assert reply.status == 200 and reply.body == body
    rows = file_rows(lf.aizu.dir, hashlib.sha256(body).digest())
    assert rows and all(r[3] == body and r[4] is None for r in rows)
    assert len(body) < SPOOLED


@pytest.mark.postgres
def test_body_files_with_the_log_on_postgresql(
    tmp_path_factory: pytest.TempPathFactory,
    pg_schema: str,
) -> None:
    """Takamatsu's log in PostgreSQL (the node's database): a large body is a body file
    there too, the row says so, and verify re-hashes it."""
    lf = build_log_federation(
        tmp_path_factory.mktemp("stream-pg") / "fed",
        node_config={"messagelog": {"archive_interval": 0}},
        db_urls={TAKAMATSU: pg_schema},
    )
    try:
        lf.start_nodes()
        body = os.urandom(3 * MIB)
        reply = lf.call(body, timeout=120)
        assert reply.status == 200 and reply.body == body
        digest = hashlib.sha256(body).digest()
        engine = create_engine(pg_schema)
        try:
            with engine.connect() as conn:
                r = tables.records
                rows = conn.execute(
                    select(r.c.direction, r.c.body, r.c.body_file).where(r.c.body_sha256 == digest)
                ).all()
        finally:
            engine.dispose()
        assert {row.direction for row in rows} == {"request_out", "response_in"}
        assert all(row.body is None and row.body_file is True for row in rows)
        assert body_file(lf.takamatsu.dir, digest.hex()).stat().st_size == len(body)

        def verified() -> bool:
            return verify_json(lf.takamatsu)[1]["ok"] is True

        wait_until(verified, 60, "Takamatsu's PostgreSQL log verifies")
        body_file(lf.takamatsu.dir, digest.hex()).write_bytes(b"x" * len(body))
        code, report = verify_json(lf.takamatsu)
        assert code != 0 and report["ok"] is False
        assert any("body file" in f["message"] for f in report["failures"])
    finally:
        lf.close()


def test_archives_carry_body_files_and_purge_removes_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """An archive holds each body file as ``bodies/<sha256>``; verify checks it from the
    archive alone once the rows are purged, and the purge removes the body files. Three
    20 MiB bodies: archiving (write, read back, purge) and verifying stream them, so the
    Python allocations of each command stay within a few MiB (built whole in memory,
    archiving them peaked at about four copies)."""
    lf = build_log_federation(
        tmp_path_factory.mktemp("stream-archive") / "fed",
        settings={"timestamping_interval": 1},
        node_config={"messagelog": {"archive_interval": 0, "retention_days": 0}},
    )
    try:
        lf.start_nodes()
        bodies = [os.urandom(ARCHIVED_SIZE) for _ in range(3)]
        replies = [lf.call(body, timeout=300) for body in bodies]
        assert [r.body for r in replies] == bodies
        reply, body = replies[0], bodies[0]
        digests = [hashlib.sha256(b).hexdigest() for b in bodies]
        del bodies, replies

        def stamped() -> bool:
            report = verify(lf, AIZU)
            return report["ok"] is True and not report["unstamped"]

        wait_until(stamped, 90, "Aizu's log verifies and is stamped")
        lf.stop_nodes()
        digest = digests[0]
        stored = body_file(lf.aizu.dir, digest)
        assert stored.exists()
        rows = file_rows(lf.aizu.dir, bytes.fromhex(digest))
        shown = json.loads(log_cli(lf.aizu, "show", rows[0][2], "--body", "--json").stdout)
        assert shown["body_kept"] is True and base64.b64decode(shown["body"]) == body
        bundle = lf.aizu.dir.parent / "evidence.zip"
        exported = log_cli(lf.aizu, "export", reply.message_id, "--out", bundle, "--json")
        assert exported.exit_code == 0, exported.output
        with zipfile.ZipFile(bundle) as zf:  # an evidence bundle carries the body file too
            assert zf.read(f"bodies/{digest}") == body
        del body, shown
        with python_peak() as archiving:
            out = log_cli(lf.aizu, "archive", "--json")
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["purged_records"] >= 6, out.stdout
        archived: dict[str, str] = {}  # body entry -> its SHA-256, over every archive
        for archive in sorted((lf.aizu.dir / "archive").glob("mlog-*.zip")):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if info.filename.startswith("bodies/"):
                        with zf.open(info) as fh:
                            archived[info.filename] = hashlib.sha256(fh.read()).hexdigest()
        assert archived == {f"bodies/{name}": name for name in digests}
        assert not any(body_file(lf.aizu.dir, name).exists() for name in digests)  # archived
        with python_peak() as verifying:
            code, report = verify_json(lf.aizu)
        assert code == 0 and report["ok"] is True, report["failures"]
        assert report["checked"]["bodies"] >= 6
        for what, peak in (("archive", archiving), ("verify", verifying)):
            assert peak.mib < PYTHON_PEAK_MIB, f"log {what}: {peak.mib:.1f} MiB allocated at peak"
        shown = json.loads(log_cli(lf.aizu, "show", rows[0][2], "--body", "--json").stdout)
        assert shown["stored_in"] == "archive" and "archive entry" in shown["body_file"]
        assert hashlib.sha256(base64.b64decode(shown["body"])).hexdigest() == digest
    finally:
        lf.close()


def test_a_chunked_body_streams_and_is_logged_as_a_body_file(lf: LogFederation) -> None:
    """No Content-Length: the body is admitted to the budget chunk by chunk as it streams,
    spooled the same way, and sent on with a Content-Length."""
    body = os.urandom(5 * MIB)
    conn = http.client.HTTPConnection("127.0.0.1", int(lf.takamatsu.client_url.rsplit(":", 1)[1]))
    try:

        def pieces() -> Iterator[bytes]:
            for start in range(0, len(body), 100_000):
                yield body[start : start + 100_000]

        conn.request(
            "POST",
            f"/r1/{lf.aizu.member}/residents/echo",
            body=pieces(),
            headers={
                "Content-Type": "application/octet-stream",
                "X-Road-Client": f"{lf.takamatsu.member}/portal",
                "X-Road-Id": f"chunked-{os.getpid()}",
            },
            encode_chunked=True,
        )
        resp = conn.getresponse()
        echoed = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, echoed[:500]
    assert echoed == body
    digest = hashlib.sha256(body).digest()
    for handle in (lf.takamatsu, lf.aizu):
        rows = file_rows(handle.dir, digest)
        assert len(rows) == 2 and all(r[3] is None and r[4] == 1 for r in rows), rows
        assert body_file(handle.dir, digest.hex()).stat().st_size == len(body)
