"""Issue 17 item 5: cross-witnessed message logs, reconciled on a real two-node federation.

One federation per module (CA+OCSP, TSA, central, Aizu and Takamatsu serving).
Takamatsu's portal calls Aizu's echo service: 10 exchanges that get time-stamped,
then the TSA is stopped and 3 more exchanges (one at a time) stay in the
unstamped tail of both logs. The nodes are stopped, and copies of their
directories are tampered with the way an insider with file access would.
``secnode log reconcile`` must pass on the untouched logs and name the exchange
for every tampering, including the newest unstamped records dropped, which the
node's own ``log verify`` cannot see.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from secnode.core.messagelog import LogRecord, read_archive
from secnode.core.witness import witnessed_position
from secnode.messagelog import tables
from secnode.messagelog.convert import record_of, row_of
from secnode.store import db
from tests.support.cli import CliResult, invoke
from tests.support.logfed import (
    LogFederation,
    Reply,
    anchors_pem,
    build_log_federation,
    clone,
    sqlite_db,
    wait_stamped,
)

pytestmark = pytest.mark.slow

STAMPED_CALLS = 10
TAIL_CALLS = 3


@dataclass
class Run:
    lf: LogFederation
    replies: list[Reply]
    tail: list[Reply]
    base: Path

    @property
    def aizu(self) -> Path:
        return self.lf.aizu.dir

    @property
    def takamatsu(self) -> Path:
        return self.lf.takamatsu.dir


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("reconcile")
    lf = build_log_federation(
        base / "fed",
        settings={"timestamping_interval": 1},
        node_config={"messagelog": {"archive_interval": 0, "timestamp_batch_size": 4}},
    )
    try:
        lf.start_nodes()
        replies = lf.calls(STAMPED_CALLS, workers=4)
        wait_stamped(lf.aizu.dir)
        wait_stamped(lf.takamatsu.dir)
        lf.stop_tsa()
        tail = [lf.call(f'{{"tail":{i}}}'.encode()) for i in range(TAIL_CALLS)]
        lf.stop_nodes()
        yield Run(lf, replies, tail, base)
    finally:
        lf.close()


def reconcile(first: Path, second: Path, *args: str | Path) -> tuple[CliResult, dict[str, Any]]:
    out = invoke("secnode", "log", "reconcile", first, second, "--json", *args, check=False)
    return out, json.loads(out.stdout)


def verify(node_dir: Path) -> tuple[int, dict[str, Any]]:
    out = invoke("secnode", "log", "verify", "--json", "--dir", node_dir, check=False)
    return out.exit_code, json.loads(out.stdout)


def findings(report: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if kind is None or f["kind"] == kind]


def named(report: dict[str, Any], kind: str) -> set[str]:
    """Message ids of the exchanges the findings of ``kind`` name."""
    return {f["exchange"]["message_id"] for f in findings(report, kind)}


def rows(node_dir: Path, where: str = "1 = 1") -> list[tuple[Any, ...]]:
    """(seq, direction, message_id, record_id, witness) in seq order."""
    with sqlite_db(node_dir) as conn:
        return conn.execute(
            "SELECT seq, direction, message_id, record_id, witness FROM mlog_records "
            f"WHERE {where} ORDER BY seq"
        ).fetchall()


def stamped_seq(node_dir: Path) -> int:
    with sqlite_db(node_dir) as conn:
        return int(conn.execute("SELECT MAX(stamped_seq) FROM mlog_chains").fetchone()[0])


# ----- the untouched logs -----------------------------------------------------------------------
def test_every_exchange_succeeded_and_each_side_witnesses_the_other(run: Run) -> None:
    assert [r.status for r in [*run.replies, *run.tail]] == [200] * (STAMPED_CALLS + TAIL_CALLS)
    aizu = {(r[1], r[2]): r for r in rows(run.aizu)}
    tak = {(r[1], r[2]): r for r in rows(run.takamatsu)}
    with sqlite_db(run.aizu) as conn:
        hashes = dict(conn.execute("SELECT record_id, record_hash FROM mlog_records").fetchall())
    for reply in [*run.replies, *run.tail]:
        mid = reply.message_id
        request_in, response_in = aizu[("request_in", mid)], tak[("response_in", mid)]
        # Takamatsu's response_in names Aizu's request_in: chain, seq and record hash.
        position = witnessed_position(response_in[4])
        assert position.seq == request_in[0]
        assert position.record_hash == bytes(hashes[request_in[3]])
        # Aizu's request_in names Takamatsu's request_out, with Takamatsu's signature.
        witness = json.loads(request_in[4])
        assert witness["seq"] == tak[("request_out", mid)][0] and witness["signature"]
        assert aizu[("response_out", mid)][4] is None and tak[("request_out", mid)][4] is None


def test_untouched_logs_reconcile_clean(run: Run) -> None:
    out, report = reconcile(run.takamatsu, run.aizu)
    assert out.exit_code == 0, report["findings"]
    assert report["ok"] is True and report["findings"] == []
    assert report["exchanges_compared"] == STAMPED_CALLS + TAIL_CALLS
    assert report["witnesses_checked"] == 2 * (STAMPED_CALLS + TAIL_CALLS)
    for side in report["sides"]:
        assert side["verify"]["ok"] is True
        tail = list(side["verify"]["unstamped"].values())
        assert [t["records"] for t in tail] == [2 * TAIL_CALLS]
    text = invoke("secnode", "log", "reconcile", run.aizu, run.takamatsu, check=False)
    assert text.exit_code == 0 and "OK: the two logs agree" in text.stdout


def test_verify_states_the_unstamped_tail(run: Run) -> None:
    out = invoke("secnode", "log", "verify", "--dir", run.aizu, check=False)
    assert out.exit_code == 0, out.output
    first_tail = rows(run.aizu, f"seq > {stamped_seq(run.aizu)}")[0]
    assert f"{2 * TAIL_CALLS} record(s) not yet time-stamped, the oldest from" in out.stdout
    code, report = verify(run.aizu)
    assert code == 0
    (tail,) = report["unstamped"].values()
    assert tail["records"] == 2 * TAIL_CALLS and tail["first_seq"] == first_tail[0]


# ----- an insider drops the newest records (not yet time-stamped) -------------------------------
def test_unstamped_records_dropped_by_the_provider(run: Run) -> None:
    node_dir = clone(run.aizu, run.base / "aizu-tail-dropped")
    last = run.tail[-1].message_id
    with sqlite_db(node_dir) as conn:
        assert conn.execute("SELECT COUNT(*) FROM mlog_records WHERE message_id = ?", (last,))
        conn.execute("DELETE FROM mlog_records WHERE message_id = ?", (last,))
    code, own = verify(node_dir)
    assert code == 0, own["failures"]  # the node's own log cannot show it: a shorter chain
    out, report = reconcile(run.takamatsu, node_dir)
    assert out.exit_code == 1
    assert named(report, "witnessed_missing") == {last}
    assert named(report, "one_side_only") == {last}
    (missing,) = findings(report, "witnessed_missing")
    assert missing["side"] == str(run.takamatsu) and "no longer has" in missing["message"]
    assert "request_in" in missing["message"]


def test_unstamped_records_dropped_by_the_client(run: Run) -> None:
    node_dir = clone(run.takamatsu, run.base / "tak-tail-dropped")
    dropped = {r.message_id for r in run.tail[1:]}
    with sqlite_db(node_dir) as conn:
        for mid in dropped:
            conn.execute("DELETE FROM mlog_records WHERE message_id = ?", (mid,))
    code, own = verify(node_dir)
    assert code == 0, own["failures"]
    out, report = reconcile(node_dir, run.aizu)
    assert out.exit_code == 1
    assert named(report, "witnessed_missing") == dropped
    assert all(f["side"] == str(run.aizu) for f in findings(report, "witnessed_missing"))
    assert named(report, "one_side_only") == dropped


# ----- stamped records deleted or altered -------------------------------------------------------
def test_stamped_record_deleted_on_the_provider(run: Run) -> None:
    node_dir = clone(run.aizu, run.base / "aizu-stamped-deleted")
    seq, _, mid, *_ = rows(node_dir, "direction = 'request_in' AND seq <= 6")[-1]
    assert seq <= stamped_seq(node_dir)
    with sqlite_db(node_dir) as conn:
        conn.execute("DELETE FROM mlog_records WHERE seq = ?", (seq,))
    code, own = verify(node_dir)
    assert code == 1 and own["first_bad_record"]["kind"] == "missing"
    out, report = reconcile(run.takamatsu, node_dir)
    assert out.exit_code == 1
    assert named(report, "witnessed_missing") == {mid}
    assert named(report, "one_side_only") == {mid}
    assert report["sides"][1]["verify"]["ok"] is False


def test_stamped_record_deleted_on_the_client(run: Run) -> None:
    node_dir = clone(run.takamatsu, run.base / "tak-stamped-deleted")
    seq, _, mid, *_ = rows(node_dir, "direction = 'request_out' AND seq <= 6")[-1]
    with sqlite_db(node_dir) as conn:
        conn.execute("DELETE FROM mlog_records WHERE seq = ?", (seq,))
    out, report = reconcile(node_dir, run.aizu)
    assert out.exit_code == 1
    assert named(report, "witnessed_missing") == {mid}
    assert named(report, "one_side_only") == {mid}
    assert report["sides"][0]["verify"]["ok"] is False


def test_record_altered_on_one_side(run: Run) -> None:
    node_dir = clone(run.takamatsu, run.base / "tak-altered")
    _, _, mid, rid, _ = rows(node_dir, "direction = 'request_out'")[2]
    with sqlite_db(node_dir) as conn:
        (body_sha,) = conn.execute(
            "SELECT body_sha256 FROM mlog_records WHERE record_id = ?", (rid,)
        ).fetchone()
        forged = bytes([body_sha[0] ^ 0x01]) + bytes(body_sha[1:])
        conn.execute("UPDATE mlog_records SET body_sha256 = ? WHERE record_id = ?", (forged, rid))
    out, report = reconcile(node_dir, run.aizu)
    assert out.exit_code == 1
    assert named(report, "digest_mismatch") == {mid}
    (mismatch,) = findings(report, "digest_mismatch")
    assert "body_sha256" in mismatch["message"] and mismatch["record"].endswith(f"({rid})")
    # Aizu's witness of that request_out no longer matches what Takamatsu's log holds.
    assert named(report, "witnessed_altered") == {mid}


def test_record_altered_and_chain_recomputed_is_caught_by_the_witness(run: Run) -> None:
    """An insider who rewrites an unstamped record and rehashes the chain: it verifies,
    but the peer witnessed the original hash."""
    node_dir = clone(run.aizu, run.base / "aizu-rehashed")
    engine = db.make_engine(f"sqlite:///{node_dir / 'messagelog.db'}")
    try:
        with engine.begin() as conn:
            records = [
                record_of(r)
                for r in conn.execute(tables.records.select().order_by(tables.records.c.seq))
            ]
            at = stamped_seq(node_dir)  # the first unstamped record's index
            target = records[at]
            assert target.direction.value == "request_in"
            rewritten = list(records[:at])
            for old in records[at:]:
                rewritten.append(
                    LogRecord.create(
                        chain_id=old.chain_id,
                        seq=old.seq,
                        prev_hash=rewritten[-1].record_hash,
                        time=old.time,
                        direction=old.direction,
                        node_id=old.node_id,
                        headers_sha256=old.headers_sha256,
                        body=old.body,
                        client_id=old.client_id,
                        service_id=old.service_id,
                        message_id=old.message_id,
                        user_id=old.user_id,
                        purpose=old.purpose,
                        legal_basis=old.legal_basis,
                        data_subject=old.data_subject,
                        decision=old.decision,
                        reason="not personal data" if old is target else old.reason,
                        signed_digest=old.signed_digest,
                        signature=old.signature,
                        signer_cert_sha256=old.signer_cert_sha256,
                        ocsp_sha256=old.ocsp_sha256,
                        witness=old.witness,
                        record_id=old.id,
                    )
                )
            conn.execute(tables.records.delete().where(tables.records.c.seq > at))
            conn.execute(tables.records.insert(), [row_of(r) for r in rewritten[at:]])
    finally:
        engine.dispose()
    code, own = verify(node_dir)
    assert code == 0, own["failures"]  # internally consistent: only the peer can tell
    out, report = reconcile(run.takamatsu, node_dir)
    assert out.exit_code == 1
    assert target.message_id in named(report, "witnessed_altered")
    assert "rewritten" in findings(report, "witnessed_altered")[0]["message"]


# ----- archives ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archived(run: Run) -> Path:
    """A copy of Aizu with its stamped records in two archives, purged from the database."""
    node_dir = clone(run.aizu, run.base / "aizu-archived")
    half = rows(node_dir, f"seq = {stamped_seq(node_dir) // 2}")[0]
    with sqlite_db(node_dir) as conn:
        (cut,) = conn.execute("SELECT time FROM mlog_records WHERE seq = ?", (half[0],)).fetchone()
    config = node_dir / "secnode.toml"
    config.write_text(config.read_text().replace("retention_days = 30", "retention_days = 0"))
    for extra in (["--until", cut], []):
        out = invoke("secnode", "log", "archive", "--json", "--dir", node_dir, *extra, check=False)
        assert out.exit_code == 0, out.output
    assert len(sorted((node_dir / "archive").glob("mlog-*.zip"))) == 2
    return node_dir


def test_archived_log_reconciles_clean(run: Run, archived: Path) -> None:
    out, report = reconcile(run.takamatsu, archived)
    assert out.exit_code == 0, report["findings"]
    assert report["exchanges_compared"] == STAMPED_CALLS + TAIL_CALLS


def test_archive_of_one_side_missing(run: Run, archived: Path) -> None:
    node_dir = clone(archived, run.base / "aizu-archive-missing")
    first = sorted((node_dir / "archive").glob("mlog-*.zip"))[0]
    records = read_archive(first).evidence.records
    lost = {r.message_id for r in records}
    lost_requests = {r.message_id for r in records if r.direction.value == "request_in"}
    assert lost_requests
    first.unlink()
    out, report = reconcile(run.takamatsu, node_dir)
    assert out.exit_code == 1
    assert report["sides"][1]["verify"]["ok"] is False
    # Takamatsu's response_in records witness the request_in records the archive held.
    assert named(report, "witnessed_missing") == lost_requests
    assert lost <= named(report, "one_side_only")


def test_archive_files_alone_with_the_auditors_anchor(run: Run, archived: Path) -> None:
    """Archives without their node directory: the auditor brings that side's anchor."""
    only = run.base / "aizu-archives-only"
    shutil.copytree(archived / "archive", only)
    anchors = anchors_pem(run.lf, run.base / "anchors.pem")
    refused = invoke("secnode", "log", "reconcile", run.takamatsu, only, check=False)
    assert refused.exit_code != 0 and "anchor" in refused.output
    out, report = reconcile(run.takamatsu, only, "--second-anchor", anchors)
    # The archives hold the stamped records; the unstamped tail lived in the database only.
    assert report["sides"][1]["verify"]["ok"] is True
    assert named(report, "witnessed_missing") == {r.message_id for r in run.tail}
    assert out.exit_code == 1
