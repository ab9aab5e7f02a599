"""The group-commit writer and the SQLite checkpointer, in-process on a real database.

A write failure is made the way it happens in production, by the database
refusing the insert (a trigger here), not by a mock: the awaiting messages
must get the error, and the writer must go on in a new chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from secnode.core.identifiers import ServiceId, SubsystemId
from secnode.core.jsonfmt import canonical_json
from secnode.core.message import MessageError, MessageHeaders
from secnode.core.messagelog import (
    LogRecord,
    TrustAnchors,
    VerifyOptions,
    verify_log,
)
from secnode.core.messagelog.record import canonical_bytes, json_string, parse_time
from secnode.messagelog.checkpoint import Checkpointer, disable_autocheckpoint
from secnode.messagelog.convert import (
    RECORD_COLUMNS,
    draft_from_event,
    headers_json,
    headers_sha256,
    record_of,
)
from secnode.messagelog.stamper import Stamper
from secnode.messagelog.store import LogStore
from secnode.messagelog.writer import LARGE_BODY, LogWriteError, LogWriter
from secnode.proxy.hooks import ExchangeEvent
from secnode.store import db

NODE = "JP/GOV/072028/ss1"
CLIENT = SubsystemId.parse("JP/GOV/372013/portal")
SERVICE = ServiceId.parse("JP/GOV/072028/residents/echo")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = db.make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    db.migrate(eng)
    yield eng
    eng.dispose()


def event(message_id: str, body: bytes = b'{"x":1}') -> ExchangeEvent:
    headers = MessageHeaders(
        "rest",
        CLIENT,
        SERVICE,
        message_id,
        rest_method="POST",
        rest_path="",
        purpose="welfare",
        data_subject="resident-1001",
    )
    return ExchangeEvent("request_in", headers, hashlib.sha256(body).digest(), body=body)


def verify_db(engine: Engine) -> list[str]:
    live = LogStore(engine, NODE).live_evidence()
    report = verify_log(TrustAnchors(ca_certs=[]), live=live, options=VerifyOptions())
    return [f.describe() for f in report.failures]


def test_draft_keeps_what_the_record_needs() -> None:
    ev = event("m-1", b"hello")
    draft = draft_from_event(ev)
    record = draft.seal(f"{NODE}#w", 1, bytes(32), NODE)
    assert record.body == b"hello" and record.body_size == 5
    assert record.purpose == "welfare" and record.data_subject == "resident-1001"
    assert record.headers_sha256 == headers_sha256(ev.headers)
    assert record.signature is None and record.hash_ok()
    ev.log_body = False
    assert draft_from_event(ev).seal(f"{NODE}#w", 1, bytes(32), NODE).body is None


def test_concurrent_appends_share_commits_and_form_one_chain(engine: Engine) -> None:
    async def main() -> tuple[list[LogRecord], LogWriter]:
        writer = LogWriter(engine, NODE, on_connect=disable_autocheckpoint)
        writer.start()
        records = await asyncio.gather(
            *(writer.append(draft_from_event(event(f"m-{i}"))) for i in range(300))
        )
        await writer.close()
        return list(records), writer

    records, writer = asyncio.run(main())
    assert [r.seq for r in records] == list(range(1, 301))  # sealed in the order queued
    assert [r.message_id for r in records] == [f"m-{i}" for i in range(300)]
    assert writer.stats.records == 300 and writer.stats.commits < 300
    assert verify_db(engine) == []


def test_a_failed_commit_refuses_its_messages_and_starts_a_new_chain(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON mlog_records "
                "WHEN NEW.message_id = 'boom' BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        )

    async def main() -> tuple[LogRecord, LogRecord, LogWriter]:
        writer = LogWriter(engine, NODE)
        writer.start()
        first = await writer.append(draft_from_event(event("ok-1")))
        with pytest.raises(LogWriteError, match="disk full"):
            await writer.append(draft_from_event(event("boom")))
        after = await writer.append(draft_from_event(event("ok-2")))
        await writer.close()
        return first, after, writer

    first, after, writer = asyncio.run(main())
    assert first.seq == 1 and after.seq == 1 and after.chain_id != first.chain_id
    assert writer.stats.failures == 1 and len(writer.chain_ids) == 2
    store = LogStore(engine, NODE)
    assert sorted(store.chain_ids()) == sorted([first.chain_id, after.chain_id])
    assert {r.message_id for c in store.chain_ids() for r in store.records(c)} == {"ok-1", "ok-2"}
    assert verify_db(engine) == []


@pytest.mark.parametrize("locked", [False, True], ids=["inline", "worker-thread"])
def test_a_large_body_is_never_bound_into_the_insert(
    engine: Engine, tmp_path: Path, locked: bool
) -> None:
    """Issue 12 item 9: on SQLite a body from ``LARGE_BODY`` on goes into its row by blob
    I/O after the ``INSERT`` (a cached statement keeps its bound values: each bound body
    stayed in memory). The database refuses a large bound body (a trigger), so a column
    added after ``body`` that moved it out of the writer's sight fails here: the witness
    column did, and a node's RSS no longer returned after a burst of large messages.
    ``locked``: another connection holds the write lock, so the batch goes to the worker
    thread's path."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_bound_body BEFORE INSERT ON mlog_records "
                f"WHEN length(NEW.body) >= {LARGE_BODY} "
                "BEGIN SELECT RAISE(ABORT, 'large body bound into the INSERT'); END"
            )
        )
    large, small = b"L" * (LARGE_BODY + 1), b'{"small":1}'
    witness = '{"chain_id":"peer#1","seq":7}'

    other = sqlite3.connect(tmp_path / "log.db", isolation_level=None)

    async def main() -> LogWriter:
        writer = LogWriter(engine, NODE)
        writer.start()
        await writer.append(draft_from_event(event("first")))  # the chain's row is stored
        for mid, body in (("large", large), ("small", small)):
            ev = event(mid, body)
            ev.witness = witness
            if locked:
                other.execute("BEGIN IMMEDIATE")
            pending = asyncio.ensure_future(writer.append(draft_from_event(ev)))
            if locked:
                await asyncio.sleep(0.2)
                other.execute("COMMIT")
            await asyncio.wait_for(pending, timeout=30)
        await writer.close()
        return writer

    writer = asyncio.run(main())
    other.close()
    assert writer.stats.inline_commits == (1 if locked else 3)
    store = LogStore(engine, NODE)
    (chain,) = store.chain_ids()
    stored = {r.message_id: r for r in store.records(chain)}
    assert stored["large"].body == large and stored["small"].body == small
    assert stored["large"].witness == witness == stored["small"].witness
    assert verify_db(engine) == []


def test_writer_never_checkpoints_and_the_checkpointer_truncates(
    engine: Engine, tmp_path: Path
) -> None:
    wal = tmp_path / "log.db-wal"

    async def main() -> None:
        writer = LogWriter(engine, NODE, on_connect=disable_autocheckpoint)
        writer.start()
        body = os.urandom(2048)
        for chunk in range(6):  # ~6 MB of WAL: past the 1000-page autocheckpoint threshold
            await asyncio.gather(
                *(writer.append(draft_from_event(event(f"{chunk}-{i}", body))) for i in range(500))
            )
        assert wal.stat().st_size > 4096 * 1000  # nobody checkpointed inside a commit
        checkpointer = Checkpointer(engine)
        busy, frames, done = await asyncio.get_running_loop().run_in_executor(
            None, checkpointer.checkpoint, "TRUNCATE"
        )
        assert busy == 0 and frames == done == 0  # TRUNCATE leaves an empty WAL behind
        assert wal.stat().st_size == 0
        await writer.close()
        checkpointer.close()

    asyncio.run(main())
    assert len(LogStore(engine, NODE).records(LogStore(engine, NODE).chain_ids()[0])) == 3000


async def _log_with_checkpointer(
    engine: Engine, count: int, pause: float, busy_interval: float
) -> tuple[LogWriter, Checkpointer, asyncio.Task[None]]:
    """A writer and a running checkpointer (50 ms ticks) after ``count`` appends, ``pause``
    seconds apart (so the checkpointer sees the log busy)."""
    writer = LogWriter(engine, NODE, on_connect=disable_autocheckpoint)
    writer.start()
    checkpointer = Checkpointer(engine, interval=0.05, busy_interval=busy_interval)
    task = asyncio.create_task(checkpointer.run(lambda: writer.stats.commits))
    for i in range(count):
        await writer.append(draft_from_event(event(f"m-{i}")))
        await asyncio.sleep(pause)
    return writer, checkpointer, task


async def _until_wal_empty(wal: Path, seconds: float = 5) -> int:
    """The WAL file's size once it is empty, or after ``seconds``."""
    deadline = dt.datetime.now() + dt.timedelta(seconds=seconds)
    while wal.stat().st_size and dt.datetime.now() < deadline:
        await asyncio.sleep(0.05)
    return wal.stat().st_size


def test_checkpointer_runs_passive_while_busy_and_truncates_when_idle(
    engine: Engine, tmp_path: Path
) -> None:
    wal = tmp_path / "log.db-wal"

    async def main() -> tuple[int, int]:
        writer, checkpointer, task = await _log_with_checkpointer(
            engine, 40, 0.005, busy_interval=0.1
        )
        size = await _until_wal_empty(wal)  # before close(), which truncates anyway
        task.cancel()
        await writer.close()
        checkpointer.close()
        return checkpointer.checkpoints, size

    checkpoints, size = asyncio.run(main())
    assert checkpoints >= 2 and size == 0


def test_an_idle_truncate_kept_from_finishing_by_a_reader_is_retried(
    engine: Engine, tmp_path: Path
) -> None:
    """The checkpointer waits at most 50 ms for readers (it blocks writers meanwhile); a
    reader that holds a snapshot longer (an auditor's long search) only delays the TRUNCATE."""
    wal = tmp_path / "log.db-wal"

    async def main() -> tuple[int, int]:
        # busy_interval=60: no RESTART while writing, so the TRUNCATE at idle is the test
        writer, checkpointer, task = await _log_with_checkpointer(
            engine, 20, 0.01, busy_interval=60
        )
        reader = sqlite3.connect(tmp_path / "log.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM mlog_records").fetchone()  # holds a snapshot
        await asyncio.sleep(0.5)  # idle: the TRUNCATE runs and finds the reader
        held = wal.stat().st_size  # the reader still pins the WAL
        reader.execute("COMMIT")
        reader.close()
        size = await _until_wal_empty(wal)
        task.cancel()
        await writer.close()
        checkpointer.close()
        return held, size

    held, size = asyncio.run(main())
    assert held > 0 and size == 0


def test_the_wal_is_reused_under_continuous_writes(engine: Engine, tmp_path: Path) -> None:
    """A PASSIVE checkpoint alone never lets SQLite restart a WAL that is written to without
    pause, and the file then grows with the traffic; the checkpointer's RESTART keeps it to
    about one interval's worth while commits go on."""
    wal = tmp_path / "log.db-wal"
    body = os.urandom(4096)

    async def main() -> tuple[int, int]:
        writer = LogWriter(engine, NODE, on_connect=disable_autocheckpoint)
        writer.start()
        checkpointer = Checkpointer(engine, interval=0.02, busy_interval=0.02)
        task = asyncio.create_task(checkpointer.run(lambda: writer.stats.commits))
        largest = 0
        for chunk in range(500):  # ~8 MB of bodies, no pause between commits
            await asyncio.gather(
                *(writer.append(draft_from_event(event(f"{chunk}-{i}", body))) for i in range(4))
            )
            largest = max(largest, wal.stat().st_size)
        task.cancel()
        await writer.close()
        checkpointer.close()
        return largest, writer.stats.records

    largest, records = asyncio.run(main())
    assert records == 2000
    assert largest < len(body) * records  # without restarts: ~3x the bodies (each commit
    # rewrites the index pages it touched)


# ----- the fast canonical form is the canonical form ----------------------------------------------
_text = st.one_of(st.none(), st.text(max_size=40))


@settings(max_examples=300, deadline=None)
@given(
    client=_text,
    reason=_text,
    subject=_text,
    user=_text,
    body_size=st.integers(0, 2**53 - 1),
    seq=st.integers(1, 2**53 - 1),
    signed=st.booleans(),
    when=st.datetimes(
        min_value=dt.datetime(1000, 1, 1),
        max_value=dt.datetime(9999, 12, 31),
        timezones=st.just(dt.UTC),
    ),
)
def test_canonical_bytes_equal_the_json_definition(
    client: str | None,
    reason: str | None,
    subject: str | None,
    user: str | None,
    body_size: int,
    seq: int,
    signed: bool,
    when: dt.datetime,
) -> None:
    """``canonical_bytes`` writes JSON by hand for speed; it must stay byte-identical to
    ``canonical_json(canonical_fields())`` (RFC 8785 subset, docs/audit.md §6.2)."""
    record = LogRecord.create(
        chain_id=f"{NODE}#w",
        seq=seq,
        prev_hash=bytes(32),
        time=when,
        direction="refusal",
        node_id=NODE,
        headers_sha256=hashlib.sha256(b"h").digest(),
        body_sha256=bytes(32),
        body_size=body_size,
        client_id=client,
        reason=reason,
        data_subject=subject,
        user_id=user,
        signed_digest=b"\x00d" if signed else None,
        signature=b"\xffsig" if signed else None,
        signer_cert_sha256=bytes(range(32)) if signed else None,
    )
    assert canonical_bytes(record) == canonical_json(record.canonical_fields())
    assert record.hash_ok()


def test_headers_digest_covers_every_header_field() -> None:
    h = event("m-1").headers
    fields = {f.name: getattr(h, f.name) for f in dataclasses.fields(h)}
    fields.update(client=str(h.client), service=str(h.service))
    assert headers_sha256(h) == hashlib.sha256(canonical_json(fields)).digest()
    changed = dataclasses.replace(h, issue="other")
    assert headers_sha256(changed) != headers_sha256(h)


@settings(max_examples=300, deadline=None)
@given(user=_text, issue=_text, purpose=_text, subject=_text, query=_text)
def test_the_fast_header_json_is_json_dumps(
    user: str | None, issue: str | None, purpose: str | None, subject: str | None, query: str | None
) -> None:
    try:
        h = MessageHeaders(
            "rest",
            CLIENT,
            SERVICE,
            "m-1",
            user_id=user,
            issue=issue,
            purpose=purpose,
            data_subject=subject,
            rest_method="GET",
            rest_path="/a",
            rest_query=query,
        )
    except MessageError:
        assume(False)
        return
    data = {f.name: getattr(h, f.name) for f in dataclasses.fields(h)}
    data.update(client=str(h.client), service=str(h.service))
    assert headers_json(h) == json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


# ----- where the commit runs ---------------------------------------------------------------------
def test_sqlite_batches_commit_on_the_event_loop(engine: Engine) -> None:
    async def main() -> LogWriter:
        writer = LogWriter(engine, NODE)
        writer.start()
        await asyncio.gather(*(writer.append(draft_from_event(event(f"m-{i}"))) for i in range(50)))
        await writer.close()
        return writer

    writer = asyncio.run(main())
    assert writer.stats.records == 50
    assert writer.stats.inline_commits == writer.stats.commits > 0
    assert verify_db(engine) == []


def test_a_message_resumes_one_loop_pass_after_its_batch_commits(engine: Engine) -> None:
    """Each message waits for four commits in a row (two per node), so every loop pass a
    wait costs shows in the latency: the appender resumes in the pass that commits its batch,
    not in the pass after (when a future's wake-up would run)."""

    async def main() -> tuple[int, int]:
        writer = LogWriter(engine, NODE)
        writer.start()
        await writer.append(draft_from_event(event("warm-up")))  # the chain's row is stored
        task = asyncio.create_task(writer.append(draft_from_event(event("m-1"))))
        passes = 0
        while not task.done():
            await asyncio.sleep(0)
            passes += 1
        written = task.result()
        await writer.close()
        return passes, written.seq

    passes, seq = asyncio.run(main())
    assert seq == 2
    assert passes == 2  # pass 1: the task queues its record; pass 2: commit, then it resumes


def test_a_cancelled_message_still_has_its_record_in_the_chain(engine: Engine) -> None:
    async def main() -> LogWriter:
        writer = LogWriter(engine, NODE)
        writer.start()
        task = asyncio.create_task(writer.append(draft_from_event(event("gone"))))
        await asyncio.sleep(0)  # the record is queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError, match=r"^$"):
            await task
        await writer.append(draft_from_event(event("next")))
        await writer.close()
        return writer

    writer = asyncio.run(main())
    assert writer.stats.records == 2
    assert [r.message_id for r in LogStore(engine, NODE).records(writer.chain_id)] == [
        "gone",
        "next",
    ]
    assert verify_db(engine) == []


def test_a_held_write_lock_moves_the_batch_to_the_worker_thread(
    engine: Engine, tmp_path: Path
) -> None:
    """Another connection holds SQLite's write lock: the writer must not wait for it on the
    event loop (the loop keeps running), the message waits until the lock is released, and
    the chain stays one valid chain."""
    other = sqlite3.connect(tmp_path / "log.db", isolation_level=None)

    async def main() -> tuple[LogWriter, int, bool]:
        writer = LogWriter(engine, NODE)
        writer.start()
        await writer.append(draft_from_event(event("before")))
        other.execute("BEGIN IMMEDIATE")
        pending = asyncio.ensure_future(writer.append(draft_from_event(event("during"))))
        ticks = 0
        for _ in range(20):  # 0.2 s of a responsive event loop while the lock is held
            await asyncio.sleep(0.01)
            ticks += 1
        waited = not pending.done()
        other.execute("COMMIT")
        await asyncio.wait_for(pending, timeout=10)
        await writer.append(draft_from_event(event("after")))
        await writer.close()
        return writer, ticks, waited

    writer, ticks, waited = asyncio.run(main())
    other.close()
    assert ticks == 20 and waited
    assert writer.stats.commits == 3 and writer.stats.inline_commits == 2
    assert len(writer.chain_ids) == 1
    store = LogStore(engine, NODE)
    (chain,) = store.chain_ids()
    assert [r.message_id for r in store.records(chain)] == ["before", "during", "after"]
    assert verify_db(engine) == []


_header = st.one_of(
    st.none(), st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
)


@settings(max_examples=150, deadline=None)
@given(
    user=_header,
    purpose=_header,
    subject=_header,
    reason=_header,
    body=st.binary(max_size=64),
    keep=st.booleans(),
    seq=st.integers(1, 2**53 - 1),
)
def test_the_sealed_row_is_the_record(
    user: str | None,
    purpose: str | None,
    subject: str | None,
    reason: str | None,
    body: bytes,
    keep: bool,
    seq: int,
) -> None:
    """The writer's fast path (template + join + hash) stores exactly the record that
    ``LogRecord.create`` would seal, and the row reads back as a record whose hash holds."""
    headers = MessageHeaders(
        "rest",
        CLIENT,
        SERVICE,
        "m-1",
        rest_method="POST",
        rest_path="",
        user_id=user,
        purpose=purpose,
        data_subject=subject,
    )
    ev = ExchangeEvent(
        "response_in",
        headers,
        hashlib.sha256(body).digest(),
        b"\x01" * 32,
        b"sig",
        "ab" * 32,
        "cd" * 32,
        reason=reason or "",
        body=body,
        log_body=keep,
    )
    draft = draft_from_event(ev)
    chain = f"{NODE}#w"
    row, digest = draft.seal_row(
        chain, json_string(chain), seq, bytes(32), NODE, json_string(NODE), "0123abcd"
    )
    expected = draft.seal(chain, seq, bytes(32), NODE, "0123abcd")
    assert digest == expected.record_hash
    stored = record_of(SimpleNamespace(_mapping=dict(zip(RECORD_COLUMNS, row, strict=True))))
    assert stored == expected and stored.hash_ok() and stored.body == (body if keep else None)


def test_stamper_counts_the_backlog_of_every_chain_of_the_node(engine: Engine) -> None:
    """Issue 12 item 6: the failure clock starts at the oldest unstamped record of any
    writer of the node (another process's, or an earlier one's), not only its own."""

    async def main() -> tuple[LogWriter, Stamper]:
        earlier, mine = LogWriter(engine, NODE), LogWriter(engine, NODE)
        other_node = LogWriter(engine, "JP/GOV/000000/other")
        for writer in (earlier, mine, other_node):
            writer.start()
        await other_node.append(draft_from_event(event("other-node")))
        await earlier.append(draft_from_event(event("earlier-1")))
        await earlier.append(draft_from_event(event("earlier-2")))
        await mine.append(draft_from_event(event("mine-1")))
        for writer in (earlier, mine, other_node):
            await writer.close()
        stamper = Stamper(engine, NODE, lambda: mine.chain_ids, lambda: None, 100)
        await stamper.refresh()
        return earlier, stamper

    earlier, stamper = asyncio.run(main())
    with engine.connect() as conn:
        first = conn.execute(
            text("SELECT time FROM mlog_records WHERE chain_id = :c AND seq = 1"),
            {"c": earlier.chain_id},
        ).scalar_one()
    assert stamper.state.backlog == 3  # the other node's record is not this node's
    assert stamper.state.oldest_unstamped == parse_time(first, "time")
